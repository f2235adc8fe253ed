"""Every server line, byte for byte as PROTOCOL.md spells it."""

import pytest

from gchat import replies

COMMANDS = ("/nick", "/join", "/rooms", "/who", "/msg", "/me", "/quit", "/help")


def test_welcome_is_the_seed_greeting():
    assert replies.WELCOME == b"Welcome to the chatroom!\n"


def test_status_line_on_connect():
    assert replies.status("guest1", "#lobby") == b"*** You are guest1 in #lobby. Type /help for commands.\n"


def test_chat_line():
    assert replies.chat("bob", "hello there") == b"<bob> hello there\n"


def test_chat_line_keeps_spaces_of_the_text():
    assert replies.chat("bob", "  hi  ") == b"<bob>   hi  \n"


def test_chat_line_is_utf8():
    assert replies.chat("bob", "héllo \ufffd") == "<bob> héllo \ufffd\n".encode()


def test_action_line():
    assert replies.action("bob", "waves") == b"* bob waves\n"


def test_private_message_line():
    assert replies.private("alice", "psst") == b"*alice* psst\n"


def test_joined_notice():
    assert replies.joined("bob", "#lobby") == b"*** bob joined #lobby\n"


def test_left_notice():
    assert replies.left("bob", "#dev") == b"*** bob left #dev\n"


@pytest.mark.parametrize("reason", ["leaving", "connection closed", "slow consumer", "idle timeout", "gone"])
def test_quit_notice(reason):
    assert replies.quit_notice("bob", reason) == f"*** bob quit ({reason})\n".encode()


def test_rename_notice():
    assert replies.renamed("guest1", "bob") == b"*** guest1 is now known as bob\n"


def test_you_are_now():
    assert replies.you_are_now("bob") == b"*** You are now bob\n"


def test_now_in_room_with_one_user():
    assert replies.now_in("#dev", 1) == b"*** You are now in #dev (1 user)\n"


def test_now_in_room_with_two_users():
    assert replies.now_in("#dev", 2) == b"*** You are now in #dev (2 users)\n"


def test_now_in_room_with_many_users():
    assert replies.now_in("#dev", 11) == b"*** You are now in #dev (11 users)\n"


def test_rooms_listing():
    assert replies.rooms([("#a", 1), ("#b", 2)]) == b"*** rooms (2): #a (1), #b (2)\n"


def test_rooms_listing_with_only_the_lobby():
    assert replies.rooms([("#lobby", 0)]) == b"*** rooms (1): #lobby (0)\n"


def test_rooms_listing_accepts_any_iterable():
    assert replies.rooms(iter([("#lobby", 3)])) == b"*** rooms (1): #lobby (3)\n"


def test_who_listing():
    assert replies.who("#dev", ["alice", "Bob", "carol"]) == b"*** users in #dev (3): alice, Bob, carol\n"


def test_who_listing_of_one():
    assert replies.who("#lobby", ["guest1"]) == b"*** users in #lobby (1): guest1\n"


def test_help_is_several_lines():
    assert replies.HELP.endswith(b"\n")
    assert len(replies.HELP.splitlines()) > 1


def test_every_help_line_starts_with_info_prefix():
    for line in replies.HELP.decode().splitlines():
        assert line.startswith("*** ")


@pytest.mark.parametrize("command", COMMANDS)
def test_help_names_every_command_literally(command):
    assert command in replies.HELP.decode()


def test_bye():
    assert replies.BYE == b"*** Bye!\n"


def test_line_too_long():
    assert replies.line_too_long(4096) == b"!!! line too long (max 4096 bytes)\n"


@pytest.mark.parametrize(
    "syntax",
    ["/nick NAME", "/join ROOM", "/msg NICK TEXT", "/me TEXT"],
)
def test_usage_error(syntax):
    assert replies.usage(syntax) == f"!!! usage: {syntax}\n".encode()


def test_unknown_command_keeps_the_word():
    assert replies.unknown_command("FooBar") == b"!!! unknown command: /FooBar (try /help)\n"


def test_nick_in_use():
    assert replies.nick_in_use("bob") == b"!!! nickname in use: bob\n"


def test_invalid_nick():
    assert replies.invalid_nick("a b") == b"!!! invalid nickname: a b\n"


def test_invalid_room():
    assert replies.invalid_room("a b") == b"!!! invalid room: a b\n"


def test_already_in_room():
    assert replies.already_in("#dev") == b"!!! you are already in #dev\n"


def test_no_such_user():
    assert replies.no_such_user("ghost") == b"!!! no such user: ghost\n"


def test_server_full():
    assert replies.SERVER_FULL == b"!!! server full, try again later\n"


def test_too_many_connections_from_address():
    assert replies.TOO_MANY_FROM_ADDRESS == b"!!! too many connections from your address\n"


def test_idle_timeout_notice():
    assert replies.IDLE_TIMEOUT == b"*** disconnected: idle timeout\n"


def test_server_shutting_down():
    assert replies.SHUTTING_DOWN == b"*** server shutting down\n"


def test_line_ends_with_a_single_lf():
    assert replies.line("x") == b"x\n"
