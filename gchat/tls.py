"""TLS on the listening port: the server's context, the handshake, and a socket connections can drive.

A connection treats its socket as a plain non-blocking one (timeout 0): ``recv``
raises BlockingIOError when there is nothing to read, ``send`` returns how
much was taken, and an io watcher on ``fileno()`` says when to read again.
gevent's SSLSocket fits that, once ``TlsSocket`` fixes ``recv``:

- ``recv`` raises SSLWantReadError, an OSError the reader would take for a
  broken connection, so TlsSocket raises BlockingIOError instead. Parking on
  the descriptor then is safe: OpenSSL asks for input only after handing over
  every decrypted byte (``pending()`` is 0) and finding the kernel empty, and
  CPython never turns on read-ahead, so no undecrypted record waits inside
  OpenSSL either: whatever the client sends next makes the descriptor readable.
  A read smaller than its record leaves the rest decrypted inside OpenSSL,
  where no watcher sees it, so the reader asks ``pending()`` before it parks
  after handling input.
  SSLWantWriteError (a TLS 1.3 key-update reply found the kernel full) is
  treated alike: OpenSSL finishes that reply first in the next ``send``.
- ``send`` returns 0 when the kernel refuses the data, or the whole length,
  never a part. OpenSSL may have taken some records already and then expects
  the same bytes again, possibly with more after them, which is exactly how
  the output retries its backlog. With renegotiation off, a write never
  waits for input.

gevent would run the handshake inside the connection's greenlet with no
deadline, so a client that never completes it would hold that greenlet and
its descriptor for good; ``accept_tls`` gives it ``--handshake-timeout`` seconds.
"""

import contextlib
import logging
import socket
import ssl
from typing import NoReturn, Optional

import gevent
import gevent.ssl
from gevent.socket import socket as GreenSocket

log = logging.getLogger("gchat")


class TlsError(Exception):
    """A certificate or key the server cannot use; the message is one line for the user."""


class TlsSocket(gevent.ssl.SSLSocket):  # type: ignore[misc]  # gevent is untyped
    def recv(self, buflen: int = 1024, flags: int = 0) -> bytes:
        try:
            data: bytes = super().recv(buflen, flags)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise BlockingIOError("no TLS record to read") from None
        return data

    def shutdown(self, how: int) -> None:
        """Send TLS close_notify before the FIN, so the client can tell our close from a cut.

        Never waits: the client's own close_notify is not awaited (it is read
        and discarded with the rest of its input), and a close_notify the
        kernel has no room for is skipped. The OpenSSL object stays: gevent's
        own shutdown drops it, and a read already waiting on the socket (the
        linger's, see ``gchat.connection.linger``) then raised ValueError
        when the client's next bytes came, a traceback instead of a linger.
        """
        if how != socket.SHUT_RD and self._sslobj is not None:
            with contextlib.suppress(OSError):
                self._sslobj.shutdown()
        GreenSocket.shutdown(self, how)


class _ServerContext(gevent.ssl.SSLContext):  # type: ignore[misc]  # gevent is untyped
    sslsocket_class = TlsSocket


def server_context(certfile: str, keyfile: str) -> ssl.SSLContext:
    """What ``ssl.create_default_context(Purpose.CLIENT_AUTH)`` makes, in gevent's cooperative kind.

    gevent.ssl's create_default_context is the standard library's own and
    returns a blocking context, so the context is built directly; on CPython
    3.9 to 3.13 a PROTOCOL_TLS_SERVER context has the same options. Client
    renegotiation is refused: it lets one client make the server compute
    handshakes at will, and it is the only way a write could wait for a read.
    """
    context = _ServerContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_RENEGOTIATION
    for what, path in (("certificate", certfile), ("key", keyfile)):
        try:
            open(path, "rb").close()
        except OSError as err:
            raise TlsError(f"cannot read the TLS {what} {path}: {err.strerror}") from None

    def refuse_password() -> NoReturn:
        # Without this OpenSSL would prompt for a passphrase on the terminal, and wait.
        raise TlsError(f"the TLS key {keyfile} is encrypted: give gchat an unencrypted one")

    try:
        context.load_cert_chain(certfile, keyfile, password=refuse_password)
    except ssl.SSLError as err:
        reason = _reason(err) if err.reason else "not a PEM certificate and its private key"
        raise TlsError(
            f"cannot use the TLS certificate {certfile} with its key {keyfile}: {reason}"
        ) from None
    return context


def accept_tls(
    context: ssl.SSLContext, sock: GreenSocket, peer: str, timeout: float
) -> Optional[GreenSocket]:
    """The connection with its handshake done within ``timeout`` seconds; else closed, and None.

    Whatever the failure (a plain-TCP client, a client that stalls or resets,
    no common protocol version), it costs one log line, never a traceback.
    """
    try:
        tls_sock = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
    except OSError as err:
        sock.close()
        log.info("%s TLS handshake failed (%s)", peer, _reason(err))
        return None
    try:
        with gevent.Timeout(timeout, TimeoutError(f"not done within {timeout:g} s")):
            tls_sock.do_handshake()
    except OSError as err:
        tls_sock.close()
        log.info("%s TLS handshake failed (%s)", peer, _reason(err))
        return None
    return tls_sock


def _reason(err: OSError) -> str:
    reason = getattr(err, "reason", None)  # OpenSSL's, like WRONG_VERSION_NUMBER
    if reason:
        return str(reason).lower().replace("_", " ")
    return err.strerror or str(err)
