"""What a drive answers with besides its records: the exceptions that tell "not there"
from a fault, and a page of a listing. Shared by the Drive interface
(storage.erasure.drive), its local records (storage.erasure.localrecords) and the
cluster's remote drives.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from shoal.storage.erasure.records import RecordSummary


class ShardMissing(Exception):
    """The shard (or record) is not on this drive: a normal answer, not a drive fault."""


class CorruptShard(Exception):
    """The shard's bytes do not match their CRC32C: bit rot or a torn write."""


class DriveError(Exception):
    """The drive itself failed (I/O error, offline, too slow)."""


class DriveOffline(DriveError):
    pass


class DriveTimeout(DriveError):
    pass


ShardWrite = tuple[str, bytes, int]  # (path, bytes, CRC32C)


@dataclass
class DrivePage:
    """One page of a drive's keys: (key, version summaries newest first) and prefixes."""

    keys: list[tuple[str, list[RecordSummary]]]
    prefixes: list[str]
    truncated: bool
    last: str | None


def is_io_error(exc: BaseException) -> bool:
    """Whether an exception says the drive misbehaved (rather than "not there")."""
    if isinstance(exc, DriveError):
        return True
    if isinstance(exc, (ShardMissing, CorruptShard, FileNotFoundError)):
        return False
    return isinstance(exc, OSError) and exc.errno not in (errno.ENOENT, errno.ENOTDIR)
