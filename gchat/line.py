"""The line protocol's front end on the chat: each parsed command carried out.

The chat knows no commands, only what a front-end asks of it; this table is
how a line client's ``/join``, ``/msg`` or plain line asks it. A line client
is in one room at a time, so ``/join`` is a switch and plain lines go to
that room. What the chat need not know of (``/help``, a misspelt command, a
``/pass`` once admitted) is answered here.
"""

from typing import Any, Callable

from gchat import replies
from gchat.chat import Chat, Client
from gchat.commands import (
    Ban,
    Command,
    Help,
    History,
    Join,
    Kick,
    Me,
    Msg,
    Nick,
    Oper,
    Pass,
    Quit,
    Rooms,
    Say,
    Topic,
    Unban,
    Unknown,
    Usage,
    Who,
)
from gchat.news import Kind


def history(chat: Chat, client: Client, command: History) -> None:
    """/history: the lines of the client's room before the oldest it was shown; may wait for the disk."""
    room = client.room
    before = client.scrollback.get(room)
    if before is None:
        return
    lines = chat.history(room, before, command.count)
    if lines and client.scrollback.get(room) == before:
        client.scrollback[room] = lines[0].at
    if client.connected:
        client.mailbox.deliver(replies.older_lines(room, lines))


def execute(chat: Chat, client: Client, command: Command, locked: bool) -> None:
    """Carry out ``command`` for ``client``; ``locked``: the server asked it for a password."""
    if type(command) is Say:
        # Most lines are chat: straight to the chat, which checks the client is still in it.
        chat.say(client, None, command.text)
    elif isinstance(command, Pass):
        client.mailbox.deliver(replies.PASSWORD_ACCEPTED_ALREADY if locked else replies.NO_PASSWORD_NEEDED)
    elif client.connected and not chat.closing:
        _ACTIONS[type(command)](chat, client, command)


_ACTIONS: "dict[type, Callable[[Chat, Client, Any], None]]" = {
    Say: lambda chat, client, command: chat.say(client, None, command.text),
    Me: lambda chat, client, command: chat.say(client, None, command.text, Kind.ACTION),
    Nick: lambda chat, client, command: chat.nick(client, command.name),
    Join: lambda chat, client, command: chat.join(client, command.room, switch=True),
    Msg: lambda chat, client, command: chat.private(client, command.nick, command.text),
    Rooms: lambda chat, client, command: chat.list_rooms(client),
    Who: lambda chat, client, command: chat.list_members(client),
    Topic: lambda chat, client, command: chat.topic(client, None, command.text or None),
    Oper: lambda chat, client, command: chat.oper(client, command.name, command.password),
    Kick: lambda chat, client, command: chat.kick(client, command.nick, command.reason),
    Ban: lambda chat, client, command: chat.ban(client, command.nick),
    Unban: lambda chat, client, command: chat.unban(client, command.address),
    Quit: lambda chat, client, command: chat.quit(client, command.reason),
    History: history,
    Help: lambda chat, client, command: client.mailbox.deliver(replies.HELP),
    Usage: lambda chat, client, command: client.mailbox.deliver(replies.usage(command.syntax)),
    Unknown: lambda chat, client, command: client.mailbox.deliver(replies.unknown_command(command.word)),
}
