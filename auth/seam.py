"""The single point where requests are authenticated and authorized."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Principal:
    """Who made a request; `access_key` is None for anonymous callers."""

    access_key: str | None = None

    @property
    def anonymous(self) -> bool:
        return self.access_key is None


ANONYMOUS = Principal()


async def authorize(
    *, enabled: bool, action: str, bucket: str | None, key: str | None
) -> Principal:
    """Decide who is calling and whether they may perform `action` on the resource.

    With auth disabled every caller is allowed, as the reference behaves; signature
    verification and policy evaluation plug in here.
    """
    del action, bucket, key
    if enabled:
        # Config validation refuses auth.enabled until SigV4 verification exists, so a
        # request can only get here with auth disabled.
        raise RuntimeError("auth.enabled requires SigV4 verification")
    return ANONYMOUS
