"""The inbox journal: what was appended is read back; a torn tail is dropped, not trusted."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from app.effects.journal import Journal, JournalBusy, encode, frame, journal_path, open_journal
from app.effects.store import NewDelivery
from tests.helpers import new_delivery


def delivery(n: int, body: bytes = b'{"action": "labeled"}') -> NewDelivery:
    return new_delivery(f"d-{n}", body, received_at=1_700_000_000.0 + n)


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "nightshift.db-inbox")


def test_what_was_appended_is_read_back_exactly(journal: Journal) -> None:
    first, second = [delivery(1), delivery(2, b"\n\x00{}" * 1000)], [delivery(3)]
    journal.append([encode(item) for item in first])
    journal.append([encode(item) for item in second])
    assert journal.read() == [*first, *second]


def test_a_body_is_read_back_from_where_its_record_starts(journal: Journal) -> None:
    journal.append([encode(delivery(1))])
    items = [delivery(2, b"x" * 5000), delivery(3, b"")]
    starts = journal.append([encode(item) for item in items])
    assert [journal.body(start) for start in starts] == [b"x" * 5000, b""]


def test_a_torn_last_group_is_dropped_and_cut_off(journal: Journal) -> None:
    journal.append([encode(delivery(1))])
    whole = journal.size()
    with open(journal.path, "ab") as file:  # a kill in the middle of the next write
        file.write(b"".join(frame([encode(delivery(2)), encode(delivery(4))]))[:-5])
    assert journal.read() == [delivery(1)]
    assert journal.path.stat().st_size == journal.size() == whole  # the torn one is cut off
    journal.append([encode(delivery(3))])
    assert journal.read() == [delivery(1), delivery(3)]


def test_a_group_that_fails_its_checksum_ends_the_reading(journal: Journal) -> None:
    for n in (1, 2, 3):
        journal.append([encode(delivery(n))])  # a group each
    data = bytearray(journal.path.read_bytes())
    second = 8 + len(encode(delivery(1)))
    data[second + 20] ^= 0xFF  # a flipped byte inside the second group
    journal.path.write_bytes(bytes(data))
    assert journal.read() == [delivery(1)]


def test_clear_empties_it(journal: Journal) -> None:
    journal.append([encode(delivery(1))])
    journal.clear()
    assert journal.read() == []
    journal.append([encode(delivery(2))])
    assert journal.read() == [delivery(2)]


def test_it_knows_the_room_left_on_its_disk(journal: Journal) -> None:
    free = shutil.disk_usage(journal.path.parent).free
    assert abs(journal.room() - free) < 64 * 1024 * 1024  # (other writers meanwhile)


def test_one_process_at_a_time(journal: Journal) -> None:
    with pytest.raises(JournalBusy):
        Journal(journal.path)
    url = f"sqlite:///{str(journal.path).removesuffix('-inbox')}"
    assert open_journal(url) is None  # the second one stores straight into the database
    journal.close()
    again = open_journal(url)
    assert again is not None
    again.close()


def test_only_its_owner_reads_and_writes_it(journal: Journal) -> None:
    assert os.stat(journal.path).st_mode & 0o777 == 0o600  # bodies carry private repositories


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///./nightshift.db", Path("./nightshift.db-inbox")),
        ("sqlite:////var/lib/ns/state.db", Path("/var/lib/ns/state.db-inbox")),
        ("sqlite:///:memory:", None),
        ("postgresql://127.0.0.1/test", None),
        ("postgresql+psycopg://u@h/db", None),
    ],
)
def test_where_the_journal_lives(url: str, path: Path | None) -> None:
    assert journal_path(url) == path
