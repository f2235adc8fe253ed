"""The web page's session: HTTP until the upgrade, then a client of the chat speaking JSON.

One ``WebSession`` per connection on ``--web-port``, the ``Dialect`` of its
``Connection`` (see ``gchat.connection``, which reads, rate-limits, writes,
closes and counts, as for every front-end). Its frames come from
``wire.WebFramer``: bytes to send (HTTP responses, pongs), the upgrade, and
each message from the page, parsed by ``requests`` and handed to the chat.
The chat tells the client its news rendered by the one ``WebStyle``.

A connection that never upgrades only fetches files; a WebSocket joins the
chat at once in ``#lobby``, as a line client does (with a server password,
once the page sends it). A ping every ``--web-ping`` seconds keeps a dead
socket from holding its place: one silent for a whole interval after a ping
is dropped.
"""

import logging
import time
from typing import Any, Optional, Union

import gevent
from websockets.frames import CloseCode

from gchat import commands, news
from gchat.bans import covers
from gchat.chat import Chat, Client
from gchat.commands import room_key, valid_nick
from gchat.config import Config
from gchat.connection import Connection
from gchat.gate import Door, PasswordGate, Verdict
from gchat.lifecycle import OPEN
from gchat.reasons import BANNED, KICKED, NO_PONG, QUIT, WRONG_PASSWORD
from gchat.web import requests
from gchat.web.requests import Malformed, Request, parse
from gchat.web.style import WebStyle, event, older_lines
from gchat.web.wire import MAX_HEADERS, Closed, Frame, Page, Upgraded, WebConnection, WebFramer

log = logging.getLogger("gchat")

STYLE = WebStyle()
# A WebSocket frame's header, at most: the reader reads enough for a whole --max-line message.
MAX_FRAME_HEADER = 14

# Events that are not news: the session's own replies (see the README's table).
PASSWORD_REQUIRED = "password_required"
WRONG_PASSWORD_EVENT = "wrong_password"
BANNED_EVENT = "banned"
IDLE_TIMEOUT_EVENT = "idle_timeout"
ERROR = "error"
PONG = "pong"
ALREADY_IN = "password already accepted"
NO_PASSWORD = "no password needed"


class WebSession:
    """A browser: fetching files, at the password prompt (``client`` None), or in the chat."""

    __slots__ = (
        "_chat",
        "_client",
        "_connection",
        "_gate",
        "_output",
        "_ping",
        "_timer",
        "_wire",
        "framer",
        "max_frame",
    )

    def __init__(
        self, connection: Connection, chat: Chat, config: Config, page: Page, door: Optional[Door]
    ) -> None:
        self._connection = connection
        self._output = connection.output
        self._chat = chat
        self._wire = WebConnection(page)
        self.framer = WebFramer(self._wire)
        self.max_frame = max(MAX_HEADERS, config.max_line + MAX_FRAME_HEADER)
        self._gate = PasswordGate(door, connection.host) if door is not None else None
        self._client: Optional[Client] = None
        self._ping = config.web_ping
        self._timer: Any = None

    def start(self) -> None:
        """Nothing to say before the browser asks; the timer ends a connection that never does."""
        self._timer = gevent.get_hub().loop.timer(self._ping, self._ping)
        self._timer.start(self._tick)

    def handle(self, frame: Frame) -> None:
        if isinstance(frame, str):
            # A message from the page: all but a few frames.
            self._request(parse(frame))
        elif isinstance(frame, bytes):
            self._output.deliver(frame)
        elif isinstance(frame, Upgraded):
            self._opened(frame.nick)
        else:
            assert isinstance(frame, Closed)
            if frame.reason:
                log.info("%s web: %s", self._connection.peer, frame.reason)
            self._connection.close()

    def timed_out(self) -> None:
        if self._wire.websocket:
            self._say(IDLE_TIMEOUT_EVENT)
            self._output.deliver(self._wire.close(CloseCode.NORMAL_CLOSURE, IDLE_TIMEOUT_EVENT))

    def shut_down(self) -> None:
        """For a connection outside the chat (files, password prompt): the chat tells the others."""
        if self._client is None:
            self._output.deliver(self._wire.close(CloseCode.GOING_AWAY, "server shutdown"))
            self._connection.close()

    def banned(self, address: str) -> None:
        """A ban reaches a page still at the password prompt (the chat kicks those in it)."""
        if (
            self._client is None
            and self._wire.websocket
            and self._connection.state is OPEN
            and covers(address, self._connection.host)
        ):
            self._turn_away(BANNED_EVENT, BANNED)

    def leave(self, cause: str) -> str:
        if self._timer is not None:
            self._timer.close()
            self._timer = None
        client = self._client
        if client is not None:
            if not client.connected:
                # The chat let it go already: by its quit, or an operator's kick or ban.
                cause = KICKED if client.kicked else QUIT
            self._chat.leave(client, cause)
            if log.isEnabledFor(logging.INFO):
                log.info(
                    "%s web %s disconnected (%s)", self._connection.peer, client.nick, client.quit_reason
                )
        return cause

    # ----------------------------------------------------------------------------------------

    def _tick(self) -> None:
        """Every --web-ping seconds: ping; a socket that sent nothing since the last tick is dead."""
        if not self.framer.heard:
            self._connection.abort(NO_PONG)
            return
        self.framer.heard = False
        if self._wire.websocket:
            self._output.deliver(self._wire.ping())

    def _opened(self, nick: str) -> None:
        if self._gate is None:
            self._admit(nick)
        else:
            self._say(PASSWORD_REQUIRED)

    def _admit(self, nick: str = "") -> None:
        host = self._connection.host
        if self._chat.banned(host):
            self._turn_away(BANNED_EVENT, BANNED)
            return
        client = None
        if valid_nick(nick):
            client = self._chat.connect(self._output, host, STYLE, nick)
        if client is None:
            client = self._chat.connect(self._output, host, STYLE)
        assert client is not None
        self._client = client
        if log.isEnabledFor(logging.INFO):
            log.info("%s web connected as %s", self._connection.peer, client.nick)

    def _request(self, request: Union[Request, Malformed]) -> None:
        client = self._client
        if type(request) is requests.Say and client is not None:
            # Most requests are chat lines: straight to the chat, which checks the client is in the room.
            self._chat.say(client, request.room, request.text, request.kind)
        elif isinstance(request, Malformed):
            self._say(ERROR, text=request.reason)
        elif isinstance(request, requests.Ping):
            self._say(PONG, id=request.id)
        elif client is not None:
            self._execute(client, request)
        elif self._wire.websocket:
            self._knock(request)

    def _execute(self, client: Client, request: Request) -> None:
        chat = self._chat
        if isinstance(request, requests.Private):
            chat.private(client, request.nick, request.text, request.kind)
        elif isinstance(request, commands.Nick):
            chat.nick(client, request.name)
        elif isinstance(request, commands.Join):
            chat.join(client, request.room, switch=False)
        elif isinstance(request, requests.Part):
            chat.part(client, request.room, request.reason)
        elif isinstance(request, requests.Who):
            chat.list_members(client, request.room)
        elif isinstance(request, commands.Rooms):
            chat.list_rooms(client)
        elif isinstance(request, requests.Topic):
            chat.topic(client, request.room, request.text)
        elif isinstance(request, commands.Oper):
            chat.oper(client, request.name, request.password)
        elif isinstance(request, commands.Kick):
            chat.kick(client, request.nick, request.reason)
        elif isinstance(request, commands.Ban):
            chat.ban(client, request.nick)
        elif isinstance(request, commands.Unban):
            chat.unban(client, request.address)
        elif isinstance(request, requests.Away):
            chat.away(client, request.text)
        elif isinstance(request, commands.Quit):
            chat.quit(client, request.reason)
        elif isinstance(request, requests.History):
            self._history(client, request)
        else:
            assert isinstance(request, commands.Pass)
            self._say(ERROR, text=ALREADY_IN if self._gate is not None else NO_PASSWORD)

    def _history(self, client: Client, request: requests.History) -> None:
        """The page's scroll-up, from a room it is in; may wait for the disk, as ``/history`` does.

        One line more than asked for is read, so the page knows whether to ask again.
        """
        room = room_key(request.room)
        if room is None:
            client.tell(news.InvalidRoom(request.room))
        elif room not in client.rooms:
            client.tell(news.NotIn(room))
        else:
            lines = self._chat.history(room, request.before, request.limit + 1)
            if client.connected:
                more = len(lines) > request.limit
                self._output.deliver(older_lines(room, lines[-request.limit :], more, time.time()))

    def _knock(self, request: Request) -> None:
        """A request before the password: only ``pass`` and ``quit`` mean anything."""
        gate = self._gate
        assert gate is not None
        if isinstance(request, commands.Quit):
            self._output.deliver(self._wire.close(CloseCode.NORMAL_CLOSURE, ""))
            self._connection.close(QUIT)
            return
        if not isinstance(request, commands.Pass):
            self._say(PASSWORD_REQUIRED)
            return
        if not gate.opens(request):
            # As for a line client: wrong tries from this address delay the next answer.
            while (pause := gate.turn(time.monotonic())) > 0:
                if not self._connection.reader.hold(pause):
                    return
        _, verdict = gate.knock(request, time.monotonic())
        if verdict is Verdict.ADMIT:
            self._admit()
        elif verdict is Verdict.LAST:
            self._turn_away(WRONG_PASSWORD_EVENT, WRONG_PASSWORD)
        else:
            self._say(WRONG_PASSWORD_EVENT)

    def _turn_away(self, kind: str, reason: str) -> None:
        self._say(kind)
        self._output.deliver(self._wire.close(CloseCode.POLICY_VIOLATION, reason))
        self._connection.close(reason)

    def _say(self, kind: str, **fields: str) -> None:
        self._output.deliver(event(kind, time.time(), **fields))
