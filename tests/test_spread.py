"""Several API processes: only the one with more uploads in hand sends a student to reconnect."""

import time

import pytest
from starlette.datastructures import MutableHeaders

from grader.config import Settings
from grader.routes import spread


def test_a_process_ends_the_connection_only_when_another_has_fewer_uploads_in_hand():
    assert spread.moves_on(5, [2]) and spread.moves_on(5, [9, 4])
    assert not spread.moves_on(2, [5]) and not spread.moves_on(3, [3])
    assert spread.moves_on(0, [])  # no other process taking uploads: spread them, as with one


def test_the_board_shows_other_processes_fresh_posts_and_forgets_stopped_ones(tmp_path):
    now = time.time()
    spread.post(tmp_path, "host-1", 7, now)
    spread.post(tmp_path, "host-2", 3, now - 0.1)
    spread.post(tmp_path, "host-3", 1, now - spread.FRESH_S - 0.1)  # idle: nothing in hand
    spread.post(tmp_path, "host-4", 0, now - spread.FORGET_S - 1)  # stopped
    (tmp_path / "host-5").write_bytes(b"")  # being written this instant
    assert spread.others_in_hand(tmp_path, "host-1", now) == [3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["host-1", "host-2", "host-3", "host-5"]


@pytest.mark.parametrize("mine, other, closed", [(4, 1, True), (1, 4, False), (2, 2, False)])
def test_the_answer_says_connection_close_as_the_board_decides(tmp_path, mine, other, closed):
    settings = Settings(data_dir=tmp_path, api_processes=2)
    spread.post(spread.board(settings), "another-host-1", other, time.time())
    headers = MutableHeaders()
    spread.spread_next_upload(headers, settings, mine)
    assert (headers.get("connection") == "close") is closed
    assert (spread.board(settings) / spread.this_process()).exists()  # posted for the others
    headers = MutableHeaders()
    spread.spread_next_upload(headers, settings.model_copy(update={"api_processes": 1}), mine)
    assert "connection" not in headers
