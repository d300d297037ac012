"""CORS, evaluated as S3 evaluates CORS rules.

A bucket's own CORS configuration (PutBucketCors) replaces the global `cors` settings
for that bucket. Preflights (OPTIONS with Access-Control-Request-Method) are answered
before dispatch and without authentication; a preflight no rule allows gets 403.
Actual requests from an allowed origin get the first matching rule's headers. Every
answer to a request that carries an Origin says `Vary: Origin`, so caches keep
per-origin answers apart.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from starlette.responses import Response

from shoal.app.errors import InvalidRequest, MalformedXML
from shoal.app.headers import header_value_ok
from shoal.app.xml import Node, document, parse
from shoal.auth.numbers import parse_uint
from shoal.config import Config
from shoal.storage.backend import Backend
from shoal.storage.errors import NoSuchBucket, NoSuchBucketDocument

METHODS = frozenset({"GET", "PUT", "POST", "DELETE", "HEAD"})
MAX_RULES = 100
CACHE_SECONDS = 1.0
#: MaxAgeSeconds is an Integer (32-bit) in S3's schema.
MAX_AGE = 2**31 - 1


@dataclass(frozen=True)
class Rule:
    origins: tuple[str, ...]
    methods: tuple[str, ...]
    headers: tuple[str, ...] = ()
    expose: tuple[str, ...] = ()
    max_age: int | None = None
    credentials: bool = False
    id: str | None = None

    def allows(self, origin: str, method: str, wanted: list[str]) -> bool:
        return (
            _matches(origin, self.origins)
            and ("*" in self.methods or method.upper() in self.methods)
            and all(_matches(h, self.headers) for h in wanted)
        )


def wildcard_match(pattern: str, value: str) -> bool:
    """`value` matches `pattern`, whose `*` stands for any text, case-insensitively.

    Linear in the value's length for any number of `*` (a regex of several `.*` on a
    long Origin header backtracks for minutes, holding the event loop): the pieces
    between the stars are found left to right, the first and last anchored.
    """
    pieces = pattern.lower().split("*")
    value = value.lower()
    first, last = pieces[0], pieces[-1]
    if len(pieces) == 1:
        return value == first
    if len(value) < len(first) + len(last) or not value.startswith(first):
        return False
    if not value.endswith(last):
        return False
    position, end = len(first), len(value) - len(last)
    for piece in pieces[1:-1]:
        found = value.find(piece, position, end)
        if found < 0:
            return False
        position = found + len(piece)
    return True


def _matches(value: str, allowed: tuple[str, ...]) -> bool:
    return any(wildcard_match(a, value) for a in allowed)


def global_rules(config: Config) -> tuple[Rule, ...]:
    cors = config.cors
    if not cors.enabled:
        return ()
    rule = Rule(
        tuple(cors.allowed_origins),
        tuple(m.upper() for m in cors.allowed_methods),
        tuple(cors.allowed_headers),
        tuple(cors.exposed_headers),
        cors.max_age,
        cors.allow_credentials,
    )
    return (rule,)


def parse_configuration(body: bytes) -> tuple[Rule, ...]:
    """A PutBucketCors document, validated as S3 does."""
    root = parse(body)
    if root.tag != "CORSConfiguration":
        raise MalformedXML()
    rules = []
    for element in root.findall("CORSRule"):

        def texts(tag: str, el=element) -> tuple[str, ...]:
            found = tuple((e.text or "").strip() for e in el.findall(tag))
            # Rule values end up in response headers (CR/LF from "&#13;&#10;" included).
            if not all(header_value_ok(t) for t in found):
                raise MalformedXML()
            return found

        origins, methods = texts("AllowedOrigin"), texts("AllowedMethod")
        if not origins or not methods or any(m not in METHODS for m in methods):
            raise MalformedXML()
        allowed_headers = texts("AllowedHeader")
        _one_wildcard("AllowedOrigin", origins)
        _one_wildcard("AllowedHeader", allowed_headers)
        max_age = [parse_uint(t) for t in texts("MaxAgeSeconds")]
        if len(max_age) > 1 or any(a is None or a > MAX_AGE for a in max_age):
            raise MalformedXML()
        ident = texts("ID")
        rules.append(
            Rule(
                origins,
                methods,
                allowed_headers,
                texts("ExposeHeader"),
                max_age[0] if max_age else None,
                id=ident[0] if ident else None,
            )
        )
    if not rules or len(rules) > MAX_RULES:
        raise MalformedXML()
    return tuple(rules)


def _one_wildcard(element: str, values: tuple[str, ...]) -> None:
    for value in values:
        if value.count("*") > 1:
            raise InvalidRequest(f'{element} "{value}" can not have more than one wildcard.')


def render_configuration(rules: tuple[Rule, ...]) -> bytes:
    def rule_nodes(rule: Rule) -> list[Node]:
        nodes: list[Node] = [("ID", rule.id)]
        nodes += [("AllowedOrigin", o) for o in rule.origins]
        nodes += [("AllowedMethod", m) for m in rule.methods]
        nodes += [("AllowedHeader", h) for h in rule.headers]
        nodes += [("ExposeHeader", h) for h in rule.expose]
        nodes.append(("MaxAgeSeconds", rule.max_age))
        return nodes

    return document("CORSConfiguration", [("CORSRule", rule_nodes(r)) for r in rules])


@dataclass
class BucketRules:
    """Each bucket's CORS rules, cached for a second, dropped when this process sets them."""

    backend: Backend
    _cache: dict[str, tuple[float, tuple[Rule, ...] | None]] = field(default_factory=dict)

    def forget(self, bucket: str) -> None:
        self._cache.pop(bucket, None)

    async def get(self, bucket: str) -> tuple[Rule, ...] | None:
        cached = self._cache.get(bucket)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        try:
            text = await self.backend.get_bucket_document(bucket, "cors")
            rules: tuple[Rule, ...] | None = parse_configuration(text.encode())
        except (NoSuchBucketDocument, NoSuchBucket, MalformedXML):
            rules = None
        self._cache[bucket] = (time.monotonic() + CACHE_SECONDS, rules)
        return rules

    async def for_request(self, config: Config, bucket: str | None) -> tuple[Rule, ...]:
        """A bucket's own rules if it has some, else the global ones."""
        own = await self.get(bucket) if bucket else None
        return own if own is not None else global_rules(config)


def _origin_headers(rule: Rule, origin: str) -> dict[str, str]:
    wildcard = rule.origins == ("*",) and not rule.credentials
    headers = {"access-control-allow-origin": "*" if wildcard else origin, "vary": "Origin"}
    if rule.credentials:
        headers["access-control-allow-credentials"] = "true"
    return headers


def preflight(rules: tuple[Rule, ...], headers: dict[str, str]) -> Response:
    """The answer to an OPTIONS request."""
    origin = headers.get("origin")
    method = headers.get("access-control-request-method")
    wanted = [h.strip() for h in headers.get("access-control-request-headers", "").split(",")]
    wanted = [h for h in wanted if h]
    rule = None
    if origin is not None and method is not None:
        rule = next((r for r in rules if r.allows(origin, method, wanted)), None)
    if rule is None or origin is None:
        text = "CORSResponse: This CORS request is not allowed."
        if not rules:
            text = "CORSResponse: CORS is not enabled for this bucket."
        body = document(
            "Error", [("Code", "AccessForbidden"), ("Message", text)], namespace=False, lossy=True
        )
        return Response(body, 403, {"vary": "Origin"}, media_type="application/xml")
    answer = _origin_headers(rule, origin)
    answer["access-control-allow-methods"] = ", ".join(rule.methods)
    if wanted:
        answer["access-control-allow-headers"] = ", ".join(wanted)
    if rule.max_age is not None:
        answer["access-control-max-age"] = str(rule.max_age)
    return Response(status_code=200, headers=answer)


def decorate(
    rules: tuple[Rule, ...], method: str, headers: dict[str, str], response: Response
) -> None:
    """Add CORS headers to the answer of an actual (non-preflight) request."""
    origin = headers.get("origin")
    if not rules or origin is None:
        return
    response.headers["vary"] = "Origin"
    rule = next((r for r in rules if r.allows(origin, method, [])), None)
    if rule is None:
        return
    response.headers.update(_origin_headers(rule, origin))
    if rule.expose:
        response.headers["access-control-expose-headers"] = ", ".join(rule.expose)
