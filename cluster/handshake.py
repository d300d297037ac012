"""How the two ends of a QUIC connection prove they know the cluster secret, both sides.

TLS is there because QUIC requires it (each node has a self-signed certificate in its
state directory, see cluster.tls); nobody checks certificates against a CA. Instead both
ends prove they know the cluster secret, over the first two streams of every connection,
before any RPC is served:

    client -> server  _auth.hello {node: client id, nonce: Nc}
    server -> client  {node: server id, nonce: Ns, proof: HMAC(secret, "server", B, Nc, Ns, ids)}
    client -> server  _auth.proof {proof: HMAC(secret, "client", B, Nc, Ns, ids)}
    server -> client  {} | error AccessDenied (and the server closes the connection)

The secret never travels, and the fresh nonces of both sides make a recorded exchange
useless on another connection. B binds the proofs to this very TLS session: it is a hash
of the session's two 1-RTT traffic secrets (aioquic has no RFC 5705 exporter, so they are
taken from its key-log hook into memory, never written anywhere), which a relay between
two nodes cannot share with both sides, so it cannot splice two connections together. The
client only sends its proof after checking the server's.

Apart from cluster.transport, which keeps the connection itself (streams, frames, credit)
and hands the handshake its two reserved methods and the client's `authenticate`; what the
handshake needs of the connection is the `Connection` protocol below.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import struct
from collections import OrderedDict
from typing import Any, Protocol

from aioquic.quic.connection import QuicConnection

from shoal.cluster import frames
from shoal.cluster.frames import Kind
from shoal.cluster.rpc import AuthenticationFailed, PeerUnavailable, RpcError

log = logging.getLogger("shoal.cluster.transport")  # as before the split: same records

ACCESS_DENIED = 0x11  # application close code after a failed authentication
AUTH_HELLO, AUTH_PROOF = "_auth.hello", "_auth.proof"


class KeyLog:
    """In-memory sink for aioquic's key log (`secrets_log_file`), the session binding's source.

    Only the two 1-RTT traffic secrets of each connection are kept, keyed by the TLS client
    random, and handed out once as a hash; a bounded number of entries are kept for
    connections that never authenticate.
    """

    _WANTED = ("CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0")

    def __init__(self, capacity: int = 1024) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[str, dict[str, bytes]] = OrderedDict()

    def write(self, line: str) -> int:
        label, _, rest = line.partition(" ")
        if label in self._WANTED:
            client_random, _, secret = rest.strip().partition(" ")
            self._entries.setdefault(client_random, {})[label] = bytes.fromhex(secret)
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)
        return len(line)

    def flush(self) -> None:
        pass

    def binding(self, client_random: bytes | None) -> bytes | None:
        entry = self._entries.pop(client_random.hex(), None) if client_random else None
        if entry is None or len(entry) != len(self._WANTED):
            return None
        return hashlib.sha256(b"".join(entry[label] for label in self._WANTED)).digest()


def secret_proof(label: bytes, key: bytes, role: str, binding: bytes, *parts: bytes | str) -> bytes:
    """HMAC-SHA256 under the cluster secret of `label`, the role, the session binding and
    `parts`, each length-prefixed (no two lists of parts encode alike). The QUIC handshake
    and the bulk lane (cluster.lane) differ by label, so a proof for one is none for the
    other."""
    msg = bytearray()
    for part in (label, role, binding, *parts):
        raw = part.encode() if isinstance(part, str) else part
        msg += struct.pack("!I", len(raw)) + raw
    return hmac.new(key, msg, hashlib.sha256).digest()


def _proof(key: bytes, role: str, binding: bytes, *parts: bytes | str) -> bytes:
    return secret_proof(b"shoal-cluster-auth-v1", key, role, binding, *parts)


class Connection(Protocol):
    """What the handshake needs of its QUIC connection (cluster.transport)."""

    address: str
    peer_id: str | None
    authenticated: bool
    closed: PeerUnavailable | None

    async def rpc(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        """Call `method` on the peer over this connection: its result, or RpcError."""
        ...

    def refuse(self, sid: int, code: str, message: str, *, reading: bool = False) -> None:
        """Answer the request on stream `sid` with an error frame."""
        ...

    def answer(self, sid: int, head: bytes) -> None:
        """Answer the request on stream `sid` with a frame without a body."""
        ...

    def close_now(self, exc: PeerUnavailable, code: int = 0, reason: str = "") -> None:
        """Fail what is in flight and close the connection."""
        ...


class Handshake:
    """One connection's proof of the cluster secret (module docstring), either side.

    A server keeps its nonces and the session binding from the hello to the proof, and
    closes the connection if its client has not proven the secret by a deadline.
    """

    def __init__(
        self, conn: Connection, quic: QuicConnection, keylog: KeyLog, *, node_id: str, key: bytes
    ) -> None:
        self._conn = conn
        self._quic = quic
        self._keylog = keylog
        self._node_id = node_id
        self._key = key
        self._nonces: tuple[bytes, bytes] | None = None
        self._binding = b""
        self._deadline: asyncio.TimerHandle | None = None

    # -- client side

    async def authenticate(self) -> None:
        """The client's half of the secret proof."""
        conn = self._conn
        mine = os.urandom(32)
        try:
            hello = await conn.rpc(AUTH_HELLO, {"node": self._node_id, "nonce": mine.hex()})
            server_id, theirs = str(hello["node"]), bytes.fromhex(hello["nonce"])
            server_proof = bytes.fromhex(hello["proof"])
        except RpcError as exc:
            raise AuthenticationFailed(f"{conn.address}: hello refused ({exc})") from None
        except (KeyError, ValueError, TypeError):
            raise AuthenticationFailed(f"{conn.address}: malformed hello reply") from None
        binding = self._keylog.binding(self._quic.tls.client_random)
        if binding is None:
            raise AuthenticationFailed(f"{conn.address}: no TLS session to bind to")
        ids = (mine, theirs, self._node_id, server_id)
        expected = _proof(self._key, "server", binding, *ids)
        if not hmac.compare_digest(expected, server_proof):
            conn.close_now(
                AuthenticationFailed(
                    f"{conn.address}: its proof of the cluster secret does not match ours"
                    " (one side has the wrong secret)"
                ),
                ACCESS_DENIED,
                "AccessDenied: server proof refused",
            )
            raise conn.closed  # type: ignore[misc]
        try:
            proof = _proof(self._key, "client", binding, *ids)
            await conn.rpc(AUTH_PROOF, {"proof": proof.hex()})
        except RpcError as exc:
            raise AuthenticationFailed(f"{conn.address}: cluster secret refused ({exc})") from None
        conn.peer_id = server_id
        conn.authenticated = True

    # -- server side

    def start_deadline(self, seconds: float) -> None:
        """The TLS handshake is done: the client has `seconds` to prove the secret."""
        self._deadline = asyncio.get_running_loop().call_later(seconds, self._expired)

    def cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()

    def _expired(self) -> None:
        if not self._conn.authenticated:
            self._conn.close_now(
                AuthenticationFailed("client did not authenticate in time"),
                ACCESS_DENIED,
                "AccessDenied: no authentication",
            )

    def hello(self, sid: int, args: dict[str, Any]) -> None:
        conn = self._conn
        try:
            client_id, theirs = str(args["node"]), bytes.fromhex(args["nonce"])
        except (KeyError, ValueError, TypeError):
            conn.refuse(sid, "BadFrame", "malformed hello")
            return
        binding = self._keylog.binding(self._quic.tls.client_random)
        if self._nonces is not None or len(theirs) < 16 or binding is None:
            conn.refuse(sid, "AccessDenied", "unexpected hello")
            return
        mine = os.urandom(32)
        self._nonces = (theirs, mine)
        conn.peer_id = client_id
        self._binding = binding
        proof = _proof(self._key, "server", binding, theirs, mine, client_id, self._node_id)
        head = frames.encode_head(
            Kind.RESPONSE,
            {"result": {"node": self._node_id, "nonce": mine.hex(), "proof": proof.hex()}},
            0,
        )
        conn.answer(sid, head)

    def check_proof(self, sid: int, args: dict[str, Any]) -> None:
        conn = self._conn
        if self._nonces is None or conn.authenticated or conn.peer_id is None:
            conn.refuse(sid, "AccessDenied", "unexpected proof")
            return
        expected = _proof(
            self._key, "client", self._binding, *self._nonces, conn.peer_id, self._node_id
        )
        try:
            ok = hmac.compare_digest(expected, bytes.fromhex(str(args.get("proof", ""))))
        except ValueError:
            ok = False
        if not ok:
            log.warning("refused node %r: it does not know the cluster secret", conn.peer_id)
            conn.refuse(sid, "AccessDenied", "wrong cluster secret")
            # Close once the error frame had time to go out; the client closes first anyway.
            asyncio.get_running_loop().call_later(
                0.5,
                conn.close_now,
                AuthenticationFailed("client refused"),
                ACCESS_DENIED,
                "AccessDenied: wrong cluster secret",
            )
            return
        conn.authenticated = True
        self.cancel_deadline()
        conn.answer(sid, frames.encode_head(Kind.RESPONSE, {"result": {}}, 0))
