"""Client-side SigV4 header signing, for shoal's own calls to a server it started
(the embedded API's subprocess mode) and for tests that forge or craft requests.
Built from the verifier's own pieces, so the two cannot disagree."""

from __future__ import annotations

from datetime import UTC, datetime

from shoal.auth.sigv4 import (
    ALGORITHM,
    UNSIGNED_PAYLOAD,
    Scope,
    canonical_query,
    canonical_request,
    parse_query,
    sign,
    signing_key,
    string_to_sign,
)


def signed_headers(
    method: str,
    path: str,
    host: str,
    access_key: str,
    secret: str,
    region: str,
    now: datetime | None = None,
    *,
    query: str = "",
    payload_hash: str = UNSIGNED_PAYLOAD,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """Headers that authenticate a request; every header in `extra` is signed too."""
    now = now or datetime.now(UTC)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    scope = Scope(amz_date[:8], region)
    headers = {k.lower(): v for k, v in (extra or {}).items()}
    headers.update({"host": host, "x-amz-content-sha256": payload_hash, "x-amz-date": amz_date})
    names = sorted(headers)
    query_text = canonical_query(parse_query(query))
    canonical = canonical_request(
        method, path, query_text, list(headers.items()), names, payload_hash
    )
    key = signing_key(secret, scope.date, region)
    signature = sign(key, string_to_sign(amz_date, scope, canonical))
    headers["authorization"] = (
        f"{ALGORITHM} Credential={access_key}/{scope}, SignedHeaders={';'.join(names)},"
        f" Signature={signature}"
    )
    return headers
