"""One web connection's protocol, sans-I/O: HTTP/1.1 (h11) until it upgrades, then RFC 6455 (websockets).

Bytes in, bytes out: ``receive`` is given what the socket read and says what
to send back, which text messages the page sent, and whether to close after
sending. The session owns the socket; nothing here blocks or touches it.

HTTP serves a fixed set of files read once at start (no path is ever mapped
onto the file system) with a strict Content-Security-Policy, and upgrades
``GET /ws`` to a WebSocket if its ``Origin`` is allowed. Every other answer
closes its connection (``Connection: close``): a connection holds a place
under ``--max-clients`` and ``--max-per-ip``, and a browser keeps its idle
keep-alive connections for minutes, so a page load would hold several places
(until the ping timer ended them) and could keep its own WebSocket out of a
small ``--max-per-ip``. The page is four small files: one request a
connection costs it a few round trips on a local network. No WebSocket
extension is negotiated, so frames the chat renders once can be sent as they
are to every web client (see ``style``).

The WebSocket is the ``websockets`` library's sans-I/O layer (its
``Protocol``; its C extension unmasks). wsproto, the h11 authors' library,
did this before: its frame parser (generators and a Python unmasking per
frame) took 27% of the server's CPU in a 100-client flood (py-spy), 14.8 µs
a 90-byte masked frame against 4.3 for ``websockets``.
"""

import logging
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Optional, Union, cast
from urllib.parse import parse_qs, urlsplit

import h11
from websockets.datastructures import Headers
from websockets.frames import CloseCode, Opcode
from websockets.frames import Frame as WsFrame
from websockets.http11 import Request as Handshake
from websockets.protocol import OPEN, Protocol, Side
from websockets.server import ServerProtocol

STATIC = Path(__file__).parent / "static"
INDEX = "index.html"
WS_PATH = "/ws"
# Request line and headers: more is refused with 431 (a browser sends about 1 KiB).
MAX_HEADERS = 16384
CONTENT_SECURITY_POLICY = "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
SECURITY_HEADERS = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Cache-Control", "no-cache"),
)
SERVER = "gchat"
# Every answer but the upgrade's: the connection ends after it (see the module's docstring).
CLOSE = ("Connection", "close")
# The only kinds of file the page is made of (a file of another kind is an error at start).
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
# Why a WebSocket was closed by this side: the close frame's reason and the disconnect reason.
TEXT_ONLY = "text messages only"
NOT_UTF8 = "invalid UTF-8"
PROTOCOL_ERROR = "protocol error"
# The library logs each connection opened and closed at INFO: gchat logs its own lines.
_LIBRARY_LOG = logging.getLogger("gchat.websockets")
_LIBRARY_LOG.setLevel(logging.WARNING)
_TEXT, _CONT, _BINARY, _CLOSE = Opcode.TEXT, Opcode.CONT, Opcode.BINARY, Opcode.CLOSE


@dataclass(frozen=True)
class Page:
    """What a web listener serves and accepts; one for all its connections."""

    files: "dict[str, tuple[str, bytes]]"  # path ("/app.js") -> (content type, body)
    origins: "frozenset[str]"
    secure: bool
    max_message: int

    @classmethod
    def load(
        cls, origins: "frozenset[str]", secure: bool, max_message: int, directory: Path = STATIC
    ) -> "Page":
        files: dict[str, tuple[str, bytes]] = {}
        for path in sorted(directory.iterdir()):
            if path.is_file():
                files["/" + path.name] = (CONTENT_TYPES[path.suffix], path.read_bytes())
        files["/"] = files["/" + INDEX]
        return cls(files, frozenset(origin.lower() for origin in origins), secure, max_message)


def refusal_response(line: bytes) -> bytes:
    """A refusal at accept (server full, too many from the address, banned) as HTTP: 503, then close.

    The body is the line a line client would get; the page's script sees the
    upgrade fail and tries again later, as it does when the server is down.
    """
    http = h11.Connection(h11.SERVER)
    http.receive_data(b"GET / HTTP/1.1\r\nHost: gchat\r\n\r\n")
    http.next_event()
    out = Output()
    _respond(http, out, 503, line, extra=(CLOSE,))
    return out.sent


def parse_origins(text: str) -> "frozenset[str]":
    """``--web-origin``: comma-separated ``http[s]://HOST[:PORT]``, as browsers send them (lower case)."""
    origins = set()
    for item in filter(None, (part.strip() for part in text.split(","))):
        scheme, sep, rest = item.lower().partition("://")
        if scheme not in ("http", "https") or not sep or not rest or any(c in rest for c in "/?#@ "):
            raise ValueError(f"expected http://HOST[:PORT] or https://HOST[:PORT], not {item!r}")
        origins.add(f"{scheme}://{rest}")
    return frozenset(origins)


def origin_allowed(origin: Optional[str], host: Optional[str], page: Page) -> bool:
    """Whether a browser on ``origin`` may open the socket (cross-site WebSocket hijacking).

    The page's own origin (``scheme://Host``) and the listed ones are; a
    request with no Origin is not from a browser, which could send any Origin
    it liked, so the check has nothing to protect there and lets it in.
    """
    if origin is None:
        return True
    origin = origin.lower()
    if origin in page.origins:
        return True
    scheme = "https" if page.secure else "http"
    return host is not None and origin == f"{scheme}://{host.lower()}"


@dataclass(frozen=True)
class Upgraded:
    """The WebSocket is open (its 101 response is the bytes just before): the page may join the chat.

    ``nick``: the one the page asked for in ``/ws?nick=NAME`` (its nick of
    the last visit), so that a page that comes back is not a guest first.
    """

    nick: str = ""


Item = Union[bytes, str, Upgraded]


@dataclass
class Output:
    """What one ``receive`` asks of the session, in order: bytes to send, text messages, the upgrade.

    Then, if ``close``: close the connection after sending (``reason``: why,
    when this side decided it: a refusal, a close code).
    """

    items: "list[Item]" = field(default_factory=list)
    close: bool = False
    reason: str = ""

    def send(self, data: bytes) -> None:
        if data:
            self.items.append(data)

    @property
    def sent(self) -> bytes:
        return b"".join(item for item in self.items if isinstance(item, bytes))

    @property
    def texts(self) -> "list[str]":
        return [item for item in self.items if isinstance(item, str)]

    @property
    def upgraded(self) -> bool:
        return any(isinstance(item, Upgraded) for item in self.items)


@dataclass(frozen=True)
class Closed:
    """The connection is to be closed once what came before is sent; ``reason``: this side's, or empty."""

    reason: str


Frame = Union[bytes, str, Upgraded, Closed]


class WebFramer:
    """A web connection's input as the reader's frames (see ``gchat.reader.Framer``).

    Frames: ``bytes`` to send (HTTP responses, the 101, pongs, close frames),
    ``str`` (a message from the page), ``Upgraded``, and last ``Closed``. A
    pong is no frame: it proves the socket alive (``heard``) but not the user
    (the idle timeout counts frames).
    """

    __slots__ = ("_conn", "_frames", "heard")

    def __init__(self, conn: "WebConnection") -> None:
        self._conn = conn
        # A list, not a deque: it holds a frame or two, and an empty deque costs 600 bytes.
        self._frames: list[Frame] = []
        # Whether anything came since the session last looked (its ping timer clears it).
        self.heard = False

    def feed(self, data: bytes) -> None:
        self.heard = True
        self._take(self._conn.receive(data))

    def finish(self) -> None:
        self._take(self._conn.receive(b""))

    def _take(self, out: Output) -> None:
        if self._frames and isinstance(self._frames[-1], Closed):
            return
        self._frames.extend(out.items)
        if out.close:
            self._frames.append(Closed(out.reason))

    def next(self) -> Optional[Frame]:
        return self._frames.pop(0) if self._frames else None

    @property
    def buffered(self) -> int:
        waiting = sum(len(frame) for frame in self._frames if isinstance(frame, (bytes, str)))
        return waiting + self._conn.partial


class WebConnection:
    """An HTTP connection that may become a WebSocket."""

    __slots__ = ("_closed", "_http", "_page", "_partial", "_upgrade", "_ws")

    def __init__(self, page: Page) -> None:
        self._page = page
        self._http: Optional[h11.Connection] = h11.Connection(
            h11.SERVER, max_incomplete_event_size=MAX_HEADERS
        )
        self._ws: Optional[Protocol] = None
        self._upgrade: Optional[h11.Request] = None
        # The frames of a message still being received (the library limits their sum to --max-line).
        self._partial: list[bytes] = []
        self._closed = False

    @property
    def websocket(self) -> bool:
        return self._ws is not None

    @property
    def partial(self) -> int:
        """Bytes of the message being received, held until its last frame."""
        return sum(map(len, self._partial))

    def receive(self, data: bytes) -> Output:
        """Handle what was read; ``b""``: the peer closed its side."""
        out = Output()
        if self._closed:
            out.close = True
        elif self._ws is not None:
            self._receive_ws(self._ws, data, out)
        else:
            assert self._http is not None
            self._receive_http(self._http, data, out)
        self._closed = out.close
        return out

    def ping(self) -> bytes:
        """A ping frame; the page's browser answers with a pong, which is input like any other."""
        ws = self._ws
        if ws is None or ws.state is not OPEN:
            return b""
        ws.send_ping(b"")
        return _written(ws)

    def close(self, code: int, reason: str) -> bytes:
        """A close frame this side starts the closing handshake with (nothing for plain HTTP)."""
        ws = self._ws
        if ws is None or ws.state is not OPEN:
            return b""
        ws.send_close(code, reason)
        return _written(ws)

    # --- HTTP -------------------------------------------------------------------------

    def _receive_http(self, http: h11.Connection, data: bytes, out: Output) -> None:
        http.receive_data(data)
        while not out.close:
            try:
                event = http.next_event()
            except h11.RemoteProtocolError as exc:
                self._error(http, out, exc.error_status_hint, str(exc))
                return
            if event is h11.NEED_DATA:
                return
            if isinstance(event, h11.Request):
                self._request(http, event, out)
            elif isinstance(event, h11.ConnectionClosed):
                out.close = True
            elif event is h11.PAUSED:
                # Only an upgrade waits here with the connection kept: every other answer closes it.
                if self._upgrade is not None:
                    self._switch(http, self._upgrade, out)
                    return
                out.close = True
            # Data and EndOfMessage: a GET's body, if any, is ignored.

    def _request(self, http: h11.Connection, request: h11.Request, out: Output) -> None:
        path = request.target.split(b"?", 1)[0].decode("ascii", "replace")
        if request.method not in (b"GET", b"HEAD"):
            _respond(http, out, 405, b"method not allowed\n", extra=(CLOSE, ("Allow", "GET, HEAD")))
        elif path == WS_PATH:
            self._websocket_request(http, request, out)
            return
        elif path in self._page.files:
            kind, body = self._page.files[path]
            _respond(http, out, 200, body, kind, head=request.method == b"HEAD", extra=(CLOSE,))
        else:
            _respond(http, out, 404, b"not found\n", extra=(CLOSE,))
        out.close = True

    def _websocket_request(self, http: h11.Connection, request: h11.Request, out: Output) -> None:
        headers = {name: value for name, value in request.headers}
        if headers.get(b"upgrade", b"").lower() != b"websocket":
            self._error(http, out, 426, "not a WebSocket upgrade", extra=(("Upgrade", "websocket"),))
            return
        origin = headers.get(b"origin")
        host = headers.get(b"host")
        if not origin_allowed(
            origin.decode("latin-1") if origin is not None else None,
            host.decode("latin-1") if host is not None else None,
            self._page,
        ):
            self._error(http, out, 403, "origin not allowed")
            return
        # The switch happens once h11 has the whole request and pauses for our answer.
        self._upgrade = request

    def _switch(self, http: h11.Connection, request: h11.Request, out: Output) -> None:
        target = request.target.decode("ascii", "replace")
        handshake = ServerProtocol(logger=_LIBRARY_LOG)
        response = handshake.accept(
            Handshake(
                target,
                Headers((name.decode("latin-1"), value.decode("latin-1")) for name, value in request.headers),
                request.method.decode("ascii"),
            )
        )
        if response.status_code != 101:
            self._upgrade = None
            self._error(http, out, response.status_code, str(handshake.handshake_exc))
            return
        out.send(response.serialize())
        # Only the open connection is kept: the handshake's objects, h11's state and buffers go.
        connection = Protocol(Side.SERVER, max_size=self._page.max_message, logger=_LIBRARY_LOG)
        self._upgrade = None
        query = parse_qs(urlsplit(target).query)
        out.items.append(Upgraded(query.get("nick", [""])[0]))
        trailing, closed = http.trailing_data
        self._http = None
        self._ws = connection
        if trailing:
            self._receive_ws(connection, trailing, out)
        if closed and not out.close:
            self._receive_ws(connection, b"", out)

    def _error(
        self,
        http: h11.Connection,
        out: Output,
        status: int,
        reason: str,
        extra: "tuple[tuple[str, str], ...]" = (),
    ) -> None:
        out.reason = reason
        if http.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            _respond(http, out, status, (reason + "\n").encode(), extra=(CLOSE, *extra))
        out.close = True

    # --- WebSocket --------------------------------------------------------------------

    def _receive_ws(self, ws: Protocol, data: bytes, out: Output) -> None:
        """The page's text messages; the library answers pings and closes, and fails what breaks RFC 6455."""
        if data:
            ws.receive_data(data)
        else:
            ws.receive_eof()
            out.close = True
        # An open connection's events are frames; a frame it received holds bytes.
        for frame in cast("list[WsFrame]", ws.events_received()):
            opcode = frame.opcode
            if opcode is _TEXT or (opcode is _CONT and self._partial):
                message = cast(bytes, frame.data)
                if not frame.fin:
                    self._partial.append(message)
                    continue
                if self._partial:
                    self._partial.append(message)
                    message = b"".join(self._partial)
                    self._partial.clear()
                try:
                    out.items.append(message.decode())
                except UnicodeDecodeError:
                    self._close(ws, out, CloseCode.INVALID_DATA, NOT_UTF8)
                    break
            elif opcode is _BINARY or opcode is _CONT:
                self._close(ws, out, CloseCode.UNSUPPORTED_DATA, TEXT_ONLY)
                break
            elif opcode is _CLOSE:
                out.close = True
            # A ping: the library queued the pong. A pong: only proof of life.
        if ws.state is not OPEN:
            out.close = True
            sent = ws.close_sent
            if sent is not None and ws.close_rcvd is None and not out.reason:
                # The library failed the connection (RFC 6455 broken, a message over --max-line).
                out.reason = sent.reason or PROTOCOL_ERROR
        out.send(_written(ws))

    def _close(self, ws: Protocol, out: Output, code: int, reason: str) -> None:
        # Once: a connection already closing (a second binary frame in a later read) is left to close.
        if ws.state is OPEN:
            ws.send_close(code, reason)
            out.reason = reason
        out.close = True


def _written(ws: Protocol) -> bytes:
    """What the library has to send (without its end-of-stream mark: the session closes the socket)."""
    return b"".join(ws.data_to_send())


def _respond(
    http: h11.Connection,
    out: Output,
    status: int,
    body: bytes,
    kind: str = "text/plain; charset=utf-8",
    head: bool = False,
    extra: "tuple[tuple[str, str], ...]" = (),
) -> None:
    headers = [
        ("Server", SERVER),
        ("Content-Type", kind),
        ("Content-Length", str(len(body))),
        *SECURITY_HEADERS,
        *extra,
    ]
    reason = HTTPStatus(status).phrase.encode()
    out.send(http.send(h11.Response(status_code=status, headers=headers, reason=reason)))
    if not head:
        out.send(http.send(h11.Data(data=body)))
    out.send(http.send(h11.EndOfMessage()))
