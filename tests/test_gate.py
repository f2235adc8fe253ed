"""The password gate: pure, a command and the time in, a reply and a verdict out."""

from gchat.commands import parse
from gchat.gate import Door, PasswordGate, Verdict
from gchat.throttle import FIRST

ADDRESS = "192.0.2.7"


def gate(password="s3cret", door=None, address=ADDRESS):
    return PasswordGate(door or Door(password), address)


def knock(gate, line, now=0.0):
    command = parse(line)
    assert command is not None
    reply, verdict = gate.knock(command, now)
    return (reply.decode() if reply else None), verdict


def test_the_right_password_admits_without_a_reply():
    assert knock(gate(), "/pass s3cret") == (None, Verdict.ADMIT)


def test_a_wrong_password_is_said_and_the_client_may_retry():
    client = gate()
    assert knock(client, "/pass guess") == ("!!! wrong password\n", Verdict.WRONG)
    assert knock(client, "/pass s3cret") == (None, Verdict.ADMIT)


def test_the_third_wrong_password_is_the_last():
    client = gate()
    verdicts = [knock(client, f"/pass guess{n}")[1] for n in range(3)]
    assert verdicts == [Verdict.WRONG, Verdict.WRONG, Verdict.LAST]


def test_every_other_line_gets_password_required():
    client = gate()
    for line in ("hello", "/nick bob", "/join #x", "/who", "/PASSWORD x", "//pass s3cret"):
        assert knock(client, line) == ("!!! password required\n", Verdict.WAIT)


def test_other_lines_do_not_count_as_tries():
    client = gate()
    for _ in range(5):
        knock(client, "hello")
    assert client.turn(0.0) == 0.0
    assert knock(client, "/pass s3cret") == (None, Verdict.ADMIT)


def test_pass_without_a_secret_gets_its_usage():
    assert knock(gate(), "/pass") == ("!!! usage: /pass SECRET\n", Verdict.WAIT)


def test_quit_is_allowed_before_the_password():
    assert knock(gate(), "/quit") == ("*** Bye!\n", Verdict.QUIT)


def test_the_command_name_is_case_insensitive_but_the_secret_is_not():
    client = gate()
    assert knock(client, "/PASS S3CRET") == ("!!! wrong password\n", Verdict.WRONG)
    assert knock(client, "/Pass s3cret") == (None, Verdict.ADMIT)


def test_a_fresh_address_may_try_at_once():
    assert gate().turn(0.0) == 0.0


def test_a_wrong_password_makes_every_connection_of_the_address_wait():
    door = Door("s3cret")
    first, second = gate(door=door), gate(door=door)
    knock(first, "/pass guess", now=10.0)
    assert second.turn(10.0) == FIRST
    assert second.turn(10.0 + FIRST) == 0.0


def test_a_wrong_password_does_not_delay_another_address():
    door = Door("s3cret")
    knock(gate(door=door), "/pass guess", now=10.0)
    assert gate(door=door, address="192.0.2.8").turn(10.0) == 0.0


def test_a_wrong_password_makes_the_whole_ipv6_64_wait():
    """Another address of the same /64 is the same attacker; another /64 is not."""
    door = Door("s3cret")
    knock(gate(door=door, address="2001:db8:0:1::5"), "/pass guess", now=10.0)
    assert gate(door=door, address="2001:db8:0:1:ffff::9").turn(10.0) == FIRST
    assert gate(door=door, address="2001:db8:0:2::5").turn(10.0) == 0.0
