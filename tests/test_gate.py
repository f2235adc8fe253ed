"""The password gate: pure, a command in, a reply and a verdict out."""

from gchat.commands import parse
from gchat.gate import PasswordGate, Verdict


def knock(gate, line):
    command = parse(line)
    assert command is not None
    reply, verdict = gate.knock(command)
    return (reply.decode() if reply else None), verdict


def test_the_right_password_admits_without_a_reply():
    assert knock(PasswordGate("s3cret"), "/pass s3cret") == (None, Verdict.ADMIT)


def test_a_wrong_password_is_said_and_the_client_may_retry():
    gate = PasswordGate("s3cret")
    assert knock(gate, "/pass guess") == ("!!! wrong password\n", Verdict.WAIT)
    assert knock(gate, "/pass s3cret") == (None, Verdict.ADMIT)


def test_the_third_wrong_password_closes():
    gate = PasswordGate("s3cret")
    verdicts = [knock(gate, f"/pass guess{n}")[1] for n in range(3)]
    assert verdicts == [Verdict.WAIT, Verdict.WAIT, Verdict.CLOSE]


def test_every_other_line_gets_password_required():
    gate = PasswordGate("s3cret")
    for line in ("hello", "/nick bob", "/join #x", "/who", "/PASSWORD x", "//pass s3cret"):
        assert knock(gate, line) == ("!!! password required\n", Verdict.WAIT)


def test_other_lines_do_not_count_as_tries():
    gate = PasswordGate("s3cret")
    for _ in range(5):
        knock(gate, "hello")
    assert knock(gate, "/pass s3cret") == (None, Verdict.ADMIT)


def test_pass_without_a_secret_gets_its_usage():
    assert knock(PasswordGate("s3cret"), "/pass") == ("!!! usage: /pass SECRET\n", Verdict.WAIT)


def test_quit_is_allowed_before_the_password():
    assert knock(PasswordGate("s3cret"), "/quit") == ("*** Bye!\n", Verdict.CLOSE)


def test_the_command_name_is_case_insensitive_but_the_secret_is_not():
    gate = PasswordGate("s3cret")
    assert knock(gate, "/PASS S3CRET") == ("!!! wrong password\n", Verdict.WAIT)
    assert knock(gate, "/Pass s3cret") == (None, Verdict.ADMIT)
