"""The names of delivered log objects, as S3 gives them.

SimplePrefix:      [TargetPrefix]YYYY-mm-DD-HH-MM-SS-UniqueString
PartitionedPrefix: [TargetPrefix][SourceAccountId]/[SourceRegion]/[SourceBucket]/YYYY/MM/DD/
                   YYYY-mm-DD-HH-MM-SS-UniqueString

The date folders of a partitioned name are the records' event day (EventTime) or the
delivery's (DeliveryTime); the time in the file name is always the delivery's. The
unique string is 16 random upper-case hex digits, so nodes delivering at the same second
never collide.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from shoal.app.serverlog.status import PARTITIONED, LoggingStatus


def unique_string() -> str:
    return secrets.token_hex(8).upper()


def log_key(
    status: LoggingStatus,
    *,
    delivered: float,
    event: float,
    account: str,
    region: str,
    bucket: str,
    unique: str | None = None,
) -> str:
    """The key of a log object delivered at `delivered` (seconds since the epoch) holding
    records of `bucket` whose event time is `event` (the batch's first)."""
    when = datetime.fromtimestamp(delivered, UTC)
    name = f"{when:%Y-%m-%d-%H-%M-%S}-{unique or unique_string()}"
    if status.key_format != PARTITIONED:
        return status.target_prefix + name
    day = when if status.date_source == "DeliveryTime" else datetime.fromtimestamp(event, UTC)
    return f"{status.target_prefix}{account}/{region}/{bucket}/{day:%Y/%m/%d}/{name}"
