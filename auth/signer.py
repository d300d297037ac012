"""Client-side SigV4 header signing, for shoal's own calls to a server it started
(the embedded API's subprocess mode). Built from the verifier's own pieces, so the two
cannot disagree."""

from __future__ import annotations

from datetime import UTC, datetime

from auth.sigv4 import (
    ALGORITHM,
    UNSIGNED_PAYLOAD,
    Scope,
    canonical_request,
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
) -> dict[str, str]:
    """Headers that authenticate a request without query parameters and an unsigned body."""
    now = now or datetime.now(UTC)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    scope = Scope(amz_date[:8], region)
    headers = {"host": host, "x-amz-content-sha256": UNSIGNED_PAYLOAD, "x-amz-date": amz_date}
    names = sorted(headers)
    canonical = canonical_request(method, path, "", list(headers.items()), names, UNSIGNED_PAYLOAD)
    signature = sign(
        signing_key(secret, scope.date, region), string_to_sign(amz_date, scope, canonical)
    )
    headers["authorization"] = (
        f"{ALGORITHM} Credential={access_key}/{scope}, SignedHeaders={';'.join(names)},"
        f" Signature={signature}"
    )
    return headers
