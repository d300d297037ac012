"""Drives of other nodes: the Drive interface as RPCs over the cluster transport.

`RemoteDrive` is a Drive whose every method is one `Transport.call` to the node that
owns the disk; `DriveService` answers those calls there from its local drives. Shard
bytes travel as the call's body, everything else as JSON arguments and results. The
calls that carry shards (write_shard, read_shard, write_version, read_small) are bulk
calls: they take the peer's bulk lane (TLS over TCP, cluster.lane) when it offers one,
the rest stays on QUIC.

Answers keep their meaning across the wire: "not there" (ShardMissing, CorruptShard,
FileNotFoundError) is re-raised as such; anything else that went wrong on the far side
— and a peer that cannot be reached — is a DriveError, which the health layer above
counts against the drive, so a dead node's drives go offline like dead disks.
"""

from __future__ import annotations

import errno
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from shoal.cluster.transport import PeerUnavailable, Reply, Request, RpcError, Transport
from shoal.storage.erasure.drive import (
    CorruptShard,
    Drive,
    DriveError,
    DrivePage,
    ShardMissing,
    ShardWrite,
)
from shoal.storage.erasure.records import Rank, RecordSummary, VersionRecord

PREFIX = "drive."


class _Refusal(Exception):
    """An exception with the `code` the transport sends back to the caller."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _to_wire(exc: BaseException) -> _Refusal:
    if isinstance(exc, ShardMissing):
        return _Refusal("ShardMissing", str(exc))
    if isinstance(exc, CorruptShard):
        return _Refusal("CorruptShard", str(exc))
    if isinstance(exc, FileNotFoundError):
        return _Refusal("FileNotFound", str(exc))
    return _Refusal("DriveError", f"{type(exc).__name__}: {exc}")


def _from_wire(exc: RpcError, name: str) -> BaseException:
    code, message = exc.code, exc.message
    if code == "ShardMissing":
        return ShardMissing(message)
    if code == "CorruptShard":
        return CorruptShard(message)
    if code == "FileNotFound":
        return FileNotFoundError(errno.ENOENT, message)
    return DriveError(f"{name}: {code}: {message}")


def _records_to_wire(versions: Sequence[VersionRecord]) -> list[dict[str, Any]]:
    return [v.to_dict() for v in versions]


def _records_from_wire(versions: Sequence[dict[str, Any]]) -> list[VersionRecord]:
    return [VersionRecord.from_dict(v) for v in versions]


def _page_to_dict(page: DrivePage) -> dict[str, Any]:
    return {
        "keys": [[k, [s.to_dict() for s in v]] for k, v in page.keys],
        "prefixes": page.prefixes,
        "truncated": page.truncated,
        "last": page.last,
    }


def _page_from_dict(d: dict[str, Any]) -> DrivePage:
    return DrivePage(
        [(str(k), [RecordSummary.from_dict(s) for s in v]) for k, v in d["keys"]],
        list(d["prefixes"]),
        bool(d["truncated"]),
        d.get("last"),
    )


class DriveService:
    """Serves this node's drives (by drive id) to the other nodes."""

    def __init__(self, transport: Transport, drives: Mapping[str, Drive]) -> None:
        self.drives = dict(drives)
        ops: dict[str, Callable[[Drive, Request], Awaitable[Reply]]] = {
            "read_format": self._read_format,
            "is_empty": self._is_empty,
            "write_shard": self._write_shard,
            "read_shard": self._read_shard,
            "shard_info": self._shard_info,
            "read_doc": self._read_doc,
            "write_doc": self._write_doc,
            "delete": self._delete,
            "link": self._link,
            "quarantine": self._quarantine,
            "list_dir": self._list_dir,
            "make_bucket": self._make_bucket,
            "read_object": self._read_object,
            "update_object": self._update_object,
            "list_objects": self._list_objects,
            "write_version": self._write_version,
            "read_small": self._read_small,
            "sweep": self._sweep,
        }
        for op, func in ops.items():
            transport.handle(PREFIX + op, self._wrap(func))

    def _wrap(
        self, func: Callable[[Drive, Request], Awaitable[Reply]]
    ) -> Callable[[Request], Awaitable[Reply]]:
        async def handler(request: Request) -> Reply:
            drive = self.drives.get(str(request.args.get("drive")))
            if drive is None:
                raise _Refusal("NoSuchDrive", f"no drive {request.args.get('drive')!r} here")
            try:
                return await func(drive, request)
            except Exception as exc:
                raise _to_wire(exc) from exc

        return handler

    # Each op: arguments from JSON, bytes from the body.

    async def _read_format(self, drive: Drive, r: Request) -> Reply:
        return Reply({"format": await drive.read_format()})

    async def _is_empty(self, drive: Drive, r: Request) -> Reply:
        return Reply({"empty": await drive.is_empty()})

    async def _write_shard(self, drive: Drive, r: Request) -> Reply:
        await drive.write_shard(r.args["path"], r.body, int(r.args["crc"]))
        return Reply({})

    async def _read_shard(self, drive: Drive, r: Request) -> Reply:
        return Reply({}, await drive.read_shard(r.args["path"], r.args.get("crc")))

    async def _shard_info(self, drive: Drive, r: Request) -> Reply:
        return Reply({"info": await drive.shard_info(r.args["path"])})

    async def _read_doc(self, drive: Drive, r: Request) -> Reply:
        data = await drive.read_doc(r.args["path"])
        return Reply({"found": data is not None}, data or b"")

    async def _write_doc(self, drive: Drive, r: Request) -> Reply:
        await drive.write_doc(r.args["path"], r.body)
        return Reply({})

    async def _delete(self, drive: Drive, r: Request) -> Reply:
        await drive.delete(r.args["path"])
        return Reply({})

    async def _link(self, drive: Drive, r: Request) -> Reply:
        await drive.link(r.args["src"], r.args["dst"])
        return Reply({})

    async def _quarantine(self, drive: Drive, r: Request) -> Reply:
        await drive.quarantine(r.args["path"])
        return Reply({})

    async def _list_dir(self, drive: Drive, r: Request) -> Reply:
        return Reply({"names": await drive.list_dir(r.args["path"])})

    async def _make_bucket(self, drive: Drive, r: Request) -> Reply:
        await drive.make_bucket(r.args["bucket"])
        return Reply({})

    async def _read_object(self, drive: Drive, r: Request) -> Reply:
        a = r.args
        below = a.get("below")
        versions = await drive.read_object(
            a["bucket"],
            a["key"],
            a.get("version_id"),
            bool(a.get("everything")),
            None if below is None else (str(below[0]), str(below[1])),
            int(a.get("limit") or 0),
        )
        return Reply({"versions": _records_to_wire(versions)})

    async def _update_object(self, drive: Drive, r: Request) -> Reply:
        a = r.args
        add = None if a.get("add") is None else VersionRecord.from_dict(a["add"])
        versions = await drive.update_object(
            a["bucket"],
            a["key"],
            add,
            [(str(order), str(vid)) for order, vid in a.get("drop") or ()],
            a.get("drop_nulls_before"),
            bool(a.get("keep_data")),
        )
        return Reply({"versions": _records_to_wire(versions)})

    async def _list_objects(self, drive: Drive, r: Request) -> Reply:
        a = r.args
        page = await drive.list_objects(
            a["bucket"],
            prefix=a["prefix"],
            delimiter=a["delimiter"],
            after=a["after"],
            max_keys=int(a["max_keys"]),
            versions=int(a.get("versions") or 0),
        )
        return Reply(_page_to_dict(page))

    async def _write_version(self, drive: Drive, r: Request) -> Reply:
        shards: list[ShardWrite] = []
        offset = 0
        for path, size, crc in r.args["shards"]:
            shards.append((path, r.body[offset : offset + size], int(crc)))
            offset += size
        entry = VersionRecord.from_dict(r.args["entry"])
        versions = await drive.write_version(r.args["bucket"], r.args["key"], entry, shards)
        return Reply({"versions": _records_to_wire(versions)})

    async def _read_small(self, drive: Drive, r: Request) -> Reply:
        a = r.args
        versions, shard = await drive.read_small(
            a["bucket"], a["key"], int(a["shard"]), int(a["limit"]), a.get("version_id")
        )
        answer = {"versions": _records_to_wire(versions), "has_shard": shard is not None}
        return Reply(answer, shard or b"")

    async def _sweep(self, drive: Drive, r: Request) -> Reply:
        return Reply({"removed": await drive.sweep(r.args["bucket"], float(r.args["older_than"]))})


class RemoteDrive:
    """A drive on another node, reached through `transport` at `address`."""

    def __init__(self, transport: Transport, address: str, drive_id: str, name: str) -> None:
        self.transport = transport
        self.address = address
        self.drive_id = drive_id
        self.name = name
        self.online = True  # (health is tracked above: Drive.online)
        self.local = False

    async def _call(
        self, op: str, args: dict[str, Any], body: bytes = b"", *, bulk: bool = False
    ) -> Reply:
        try:
            return await self.transport.call(
                self.address, PREFIX + op, {"drive": self.drive_id, **args}, body, bulk=bulk
            )
        except RpcError as exc:
            raise _from_wire(exc, self.name) from exc
        except PeerUnavailable as exc:
            raise DriveError(f"{self.name}: {exc}") from exc

    async def read_format(self) -> dict[str, Any] | None:
        return (await self._call("read_format", {})).result["format"]

    async def write_format(self, record: dict[str, Any]) -> None:
        raise DriveError(f"{self.name}: a drive is formatted by its own node")

    async def is_empty(self) -> bool:
        return bool((await self._call("is_empty", {})).result["empty"])

    async def write_shard(self, path: str, data: bytes, crc: int) -> None:
        await self._call("write_shard", {"path": path, "crc": crc}, data, bulk=True)

    def cached_shard(self, path: str, crc: int | None) -> bytes | None:
        return None  # on another node: only read_shard reaches it

    async def read_shard(self, path: str, crc: int | None = None) -> bytes:
        return (await self._call("read_shard", {"path": path, "crc": crc}, bulk=True)).body

    async def shard_info(self, path: str) -> dict[str, Any] | None:
        return (await self._call("shard_info", {"path": path})).result["info"]

    async def read_doc(self, path: str) -> bytes | None:
        reply = await self._call("read_doc", {"path": path})
        return reply.body if reply.result["found"] else None

    async def write_doc(self, path: str, data: bytes) -> None:
        await self._call("write_doc", {"path": path}, data)

    async def delete(self, path: str) -> None:
        await self._call("delete", {"path": path})

    async def link(self, src: str, dst: str) -> None:
        await self._call("link", {"src": src, "dst": dst})

    async def quarantine(self, path: str) -> None:
        await self._call("quarantine", {"path": path})

    async def list_dir(self, path: str) -> list[str]:
        return list((await self._call("list_dir", {"path": path})).result["names"])

    async def make_bucket(self, bucket: str) -> None:
        await self._call("make_bucket", {"bucket": bucket})

    async def read_object(
        self,
        bucket: str,
        key: str,
        version_id: str | None = None,
        everything: bool = False,
        below: Rank | None = None,
        limit: int = 0,
    ) -> list[VersionRecord]:
        args = {
            "bucket": bucket,
            "key": key,
            "version_id": version_id,
            "everything": everything,
            "below": None if below is None else list(below),
            "limit": limit,
        }
        reply = await self._call("read_object", args)
        return _records_from_wire(reply.result["versions"])

    async def update_object(
        self,
        bucket: str,
        key: str,
        add: VersionRecord | None = None,
        drop: Sequence[Rank] = (),
        drop_nulls_before: str | None = None,
        keep_data: bool = False,
    ) -> list[VersionRecord]:
        args = {
            "bucket": bucket,
            "key": key,
            "add": None if add is None else add.to_dict(),
            "drop": [list(rank) for rank in drop],
            "drop_nulls_before": drop_nulls_before,
            "keep_data": keep_data,
        }
        return _records_from_wire((await self._call("update_object", args)).result["versions"])

    async def list_objects(
        self,
        bucket: str,
        *,
        prefix: str,
        delimiter: str,
        after: str,
        max_keys: int,
        versions: int = 0,
    ) -> DrivePage:
        args = {
            "bucket": bucket,
            "prefix": prefix,
            "delimiter": delimiter,
            "after": after,
            "max_keys": max_keys,
            "versions": versions,
        }
        return _page_from_dict((await self._call("list_objects", args)).result)

    async def write_version(
        self, bucket: str, key: str, entry: VersionRecord, shards: Sequence[ShardWrite]
    ) -> list[VersionRecord]:
        args = {
            "bucket": bucket,
            "key": key,
            "entry": entry.to_dict(),
            "shards": [[path, len(data), crc] for path, data, crc in shards],
        }
        body = b"".join(data for _, data, _ in shards)
        reply = await self._call("write_version", args, body, bulk=True)
        return _records_from_wire(reply.result["versions"])

    def known(
        self, bucket: str, key: str, small_limit: int | None = None
    ) -> list[VersionRecord] | None:
        """Another node's records are only known by asking it."""
        return None

    async def read_small(
        self, bucket: str, key: str, shard: int, limit: int, version_id: str | None = None
    ) -> tuple[list[VersionRecord], bytes | None]:
        args = {
            "bucket": bucket,
            "key": key,
            "shard": shard,
            "limit": limit,
            "version_id": version_id,
        }
        reply = await self._call("read_small", args, bulk=True)
        shard_bytes = reply.body if reply.result["has_shard"] else None
        return _records_from_wire(reply.result["versions"]), shard_bytes

    async def sweep(self, bucket: str, older_than: float) -> int:
        reply = await self._call("sweep", {"bucket": bucket, "older_than": older_than})
        return int(reply.result["removed"])
