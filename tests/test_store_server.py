"""``--store``: a real gchat keeping history, topics and bans across restarts, and its start errors."""

from pathlib import Path

import pytest
from conftest import run_gchat


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "chat.db"


# --- start errors: one line, status 1 --------------------------------------------------


def test_a_store_that_cannot_be_opened_is_one_line_at_start(tmp_path):
    missing = tmp_path / "missing" / "chat.db"
    status, _, errors = run_gchat("--port", "0", "--store", str(missing))
    assert (status, errors) == (1, [f"gchat: cannot open the store {missing}: No such file or directory"])


def test_a_damaged_store_is_one_line_at_start(store_path):
    store_path.write_bytes(b"garbage\n" * 1000)
    status, _, errors = run_gchat("--port", "0", "--store", str(store_path))
    assert (status, errors) == (
        1,
        [f"gchat: the store {store_path} is damaged (file is not a database): move it away to start afresh"],
    )


def test_a_store_in_use_by_another_gchat_is_one_line_at_start(start_server, store_path):
    start_server("--store", str(store_path))
    status, _, errors = run_gchat("--port", "0", "--store", str(store_path))
    assert (status, errors) == (1, [f"gchat: the store {store_path} is in use by another gchat"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--store", "x.db", "--bus", "redis://127.0.0.1:1/0"], "--store and --bus do not go together"),
        (["--keep-days", "1"], "--keep-days and --keep-lines need --store"),
        (["--store", "x.db", "--keep-lines", "-1"], "argument --keep-lines: invalid value '-1'"),
        (["--store", "x.db", "--keep-days", "soon"], "argument --keep-days: invalid value 'soon'"),
    ],
)
def test_bad_store_flags_give_one_line(args, message):
    status, _, errors = run_gchat(*args)
    assert status == 2
    assert len(errors) == 1
    assert errors[0].startswith(f"gchat: error: {message}")
