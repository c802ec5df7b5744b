"""The inbox journal: an append-only file where SQLite mode keeps deliveries before its 2xx.

A SQLite insert of a 12 KB delivery costs the ingress about as much CPU as everything else
it does for that delivery (bench/ingest_designs.py: 0.77x Probot's throughput with the
inbox committing to SQLite, 1.1x to 1.5x with this journal). So with SQLite, the inbox
appends each group of deliveries to this file and waits for `fdatasync` before the 2xx,
and moves them into the `deliveries` table afterwards, when the ingress is not busy
(app/engine/inbox.py). Whatever is still here at start-up (a crash, a kill) is moved
then, before anything new is accepted.

A group of deliveries is one write on a file opened with O_DSYNC (durable when the write
returns): the group's length and CRC-32, then a record per delivery (the lengths of its
head and body, its head as JSON, its body). A process killed in the middle of a write
leaves a torn last group: it was never acknowledged, so reading stops there and cuts the
file back to whole groups.

One process at a time: the file is locked (`flock`); a second `serve` on the same SQLite
file gets `JournalBusy` and stores directly into the database.
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import orjson

from app.effects.store import NewDelivery

log = logging.getLogger("nightshift")

_FRAME = struct.Struct("<II")  # a group: its length, its CRC-32
_RECORD = struct.Struct("<II")  # a delivery in a group: head length, body length


class JournalBusy(Exception):
    """Another process holds the journal."""


def journal_path(database_url: str) -> Path | None:
    """Where a SQLite database's inbox journal lives (beside it); None for PostgreSQL or
    an in-memory database."""
    if not database_url.startswith("sqlite:///"):
        return None
    database = database_url.removeprefix("sqlite:///").split("?")[0]
    if not database or database == ":memory:":
        return None
    return Path(database + "-inbox")


def encode(item: NewDelivery) -> bytes:
    """One delivery's record: the lengths of its head and body, its head (JSON), its body.

    The ingress encodes each delivery as it arrives, on the event loop; the inbox thread
    only frames a group and writes it. The checksum is one per group, not per record:
    zlib lets go of the GIL for a 12 KB body, and getting it back costs whichever thread
    asked up to a switch interval while the other one runs.
    """
    head = orjson.dumps(
        {
            "id": item.id,
            "event": item.event,
            "action": item.action,
            "repository": item.repository,
            "installation_id": item.installation_id,
            "status": item.status,
            "received_at": item.received_at,
        }
    )
    return b"".join((_RECORD.pack(len(head), len(item.body)), head, item.body))


def frame(records: Sequence[bytes]) -> tuple[bytes, bytes]:
    """A group's frame (its length and CRC-32) and the group itself."""
    group = b"".join(records)
    return _FRAME.pack(len(group), zlib.crc32(group)), group


def decode(data: bytes) -> tuple[list[NewDelivery], int]:
    """The deliveries of the whole groups at the start of `data`, and how many bytes those
    groups take."""
    items: list[NewDelivery] = []
    offset = 0
    while offset + _FRAME.size <= len(data):
        length, crc = _FRAME.unpack_from(data, offset)
        start = offset + _FRAME.size
        group = data[start : start + length]
        if len(group) < length or zlib.crc32(group) != crc:
            break
        try:
            items += _records(group)
        except (orjson.JSONDecodeError, KeyError, TypeError, struct.error):
            break  # a checksum that matches garbage: nothing after it is trusted either
        offset = start + length
    return items, offset


def _records(group: bytes) -> list[NewDelivery]:
    items = []
    at = 0
    while at < len(group):
        head_size, body_size = _RECORD.unpack_from(group, at)
        at += _RECORD.size
        fields = orjson.loads(group[at : at + head_size])
        at += head_size
        body = group[at : at + body_size]
        at += body_size
        if len(body) != body_size:
            raise struct.error("a record runs past its group")
        items.append(
            NewDelivery(
                id=fields["id"],
                event=fields["event"],
                action=fields["action"],
                repository=fields["repository"],
                installation_id=fields["installation_id"],
                body=body,
                status=fields["status"],
                received_at=fields["received_at"],
            )
        )
    return items


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path
        created = not path.exists()
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_DSYNC, 0o600)
        if created:  # the file's name must survive a power cut too, not only its records
            directory = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise JournalBusy(f"{path} is held by another process") from None
        self._size = os.fstat(self._fd).st_size  # one process writes it: kept here, no fstat

    def append(self, records: Sequence[bytes]) -> list[int]:
        """Durable when this returns: one framed write (O_DSYNC) for the whole group of
        `encode`d records. Where each record starts in the file (for `body`)."""
        head, group = frame(records)
        before = self._size
        starts = []
        at = before + len(head)
        for record in records:
            starts.append(at)
            at += len(record)
        try:
            written = os.writev(self._fd, [head, group])
            if written < len(head) + len(group):  # short: the rest, from where it stopped
                rest = (head + group)[written:]
                while rest:
                    rest = rest[os.write(self._fd, rest) :]
        except OSError:
            # (disk full, say) nobody gets a 2xx for this group; what it wrote goes, so
            # later records do not follow a torn one
            try:
                os.ftruncate(self._fd, before)
            finally:  # where the next group lands, even if the file could not be cut
                self._size = os.fstat(self._fd).st_size
            raise
        self._size = at
        return starts

    def body(self, start: int) -> bytes:
        """The body of the record at `start` (from the page cache, most of the time)."""
        head_size, body_size = _RECORD.unpack(os.pread(self._fd, _RECORD.size, start))
        body = os.pread(self._fd, body_size, start + _RECORD.size + head_size)
        if len(body) != body_size:
            raise OSError(f"{self.path}: a record at {start} ends early")
        return body

    def read(self) -> list[NewDelivery]:
        """Every delivery of the whole groups; a torn or corrupt tail (never acknowledged) is
        left out."""
        with open(self.path, "rb") as file:
            data = file.read()
        items, used = decode(data)
        if used < len(data):
            log.warning(
                "the inbox journal %s ends in %d bytes of a record cut short (a crash while "
                "writing, before its 2xx); they are dropped",
                self.path,
                len(data) - used,
            )
            os.ftruncate(self._fd, used)  # new records must not follow the torn one
            os.fsync(self._fd)
        self._size = used
        return items

    def size(self) -> int:
        return self._size

    def room(self) -> int:
        """Bytes free on the journal's disk, for this process (not the root's reserve)."""
        disk = os.statvfs(self.path.parent)
        return disk.f_bavail * disk.f_frsize

    def clear(self) -> None:
        """Everything in it is in the database now."""
        os.ftruncate(self._fd, 0)
        self._size = 0
        os.fsync(self._fd)

    def close(self) -> None:
        os.close(self._fd)


def open_journal(database_url: str) -> Journal | None:
    """The journal of this SQLite database; None for PostgreSQL, or when another process
    holds it (that process's deliveries are its own to move)."""
    path = journal_path(database_url)
    if path is None:
        return None
    try:
        return Journal(path)
    except JournalBusy:
        log.warning(
            "%s is held by another process on the same database: this one stores deliveries "
            "straight into the database (slower ingest)",
            path,
        )
        return None
