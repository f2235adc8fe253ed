"""Operator password hashes and the secrets files: pure, no server."""

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gchat.passwords import (
    SecretsError,
    check_hash,
    hash_password,
    parse_operators,
    read_operator_file,
    read_secret_file,
    verify,
)

CHEAP = 2**4  # scrypt's cost is a parameter of the hash; tests keep it small


@settings(max_examples=25)
@given(st.text(), st.text())
def test_a_hash_verifies_its_own_password_and_no_other(password, other):
    encoded = hash_password(password, n=CHEAP)
    assert verify(password, encoded)
    assert verify(other, encoded) == (other == password)


def test_hashes_of_one_password_differ_by_salt():
    assert hash_password("secret", n=CHEAP) != hash_password("secret", n=CHEAP)


def test_the_default_hash_uses_scrypt_at_interactive_cost():
    assert hash_password("secret").startswith("scrypt$16384$8$1$")


def test_pbkdf2_sha256_hashes_are_accepted():
    salt = b"0123456789abcdef"
    digest = hashlib.pbkdf2_hmac("sha256", b"secret", salt, 100_000)
    encoded = f"pbkdf2_sha256$100000${salt.hex()}${digest.hex()}"
    check_hash(encoded)
    assert verify("secret", encoded)
    assert not verify("Secret", encoded)


@pytest.mark.parametrize(
    "encoded", ["", "plaintext", "md5$abc", "scrypt$16384$8$1$zz$00", "scrypt$3$8$1$00$00"]
)
def test_what_is_not_a_usable_hash_is_refused_and_never_verifies(encoded):
    with pytest.raises(SecretsError):
        check_hash(encoded)
    assert not verify("", encoded)


def test_operator_file_lines_are_name_colon_hash_with_comments_and_blanks():
    encoded = hash_password("pw", n=CHEAP)
    assert parse_operators(f"# operators\n\nalice:{encoded}\n  bob:{encoded}  \n") == {
        "alice": encoded,
        "bob": encoded,
    }


@pytest.mark.parametrize(
    ("text", "problem"), [("alice\n", "line 1: expected NAME:HASH"), ("\nbob:pw\n", "line 2:")]
)
def test_a_bad_operator_line_is_named_by_number(text, problem):
    with pytest.raises(SecretsError, match=problem):
        parse_operators(text)


def test_the_password_file_gives_its_first_line_without_the_line_ending(tmp_path):
    path = tmp_path / "password"
    path.write_bytes(b"s3cret with spaces\r\nignored\n")
    assert read_secret_file(str(path)) == "s3cret with spaces"


@pytest.mark.parametrize("content", [b"", b"\nsecret\n"])
def test_a_password_file_with_an_empty_first_line_is_refused(tmp_path, content):
    path = tmp_path / "password"
    path.write_bytes(content)
    with pytest.raises(SecretsError, match="first line is empty"):
        read_secret_file(str(path))


def test_a_missing_file_is_one_clear_error(tmp_path):
    with pytest.raises(SecretsError, match="No such file or directory"):
        read_operator_file(str(tmp_path / "nope"))
