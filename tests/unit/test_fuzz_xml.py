"""XML request bodies (app/xml.py parse, the DeleteObjects body parser), fuzzed: every
input parses or is refused with MalformedXML — never another exception (the unknown
`encoding=` declaration once escaped as LookupError, a 500)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.app.errors import MalformedXML, S3Error
from shoal.app.handlers.object import MAX_DELETE_KEYS, parse_delete
from shoal.app.xml import MAX_DEPTH, MAX_ELEMENTS, escape, parse

DELETE = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Quiet>false</Quiet>'
    b"<Object><Key>a/b.txt</Key></Object><Object><Key>c</Key><VersionId>v1</VersionId>"
    b"</Object></Delete>"
)
SEEDS = [
    DELETE,
    b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>x</ETag></Part>"
    b"</CompleteMultipartUpload>",
    b"<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin>"
    b"<AllowedMethod>GET</AllowedMethod></CORSRule></CORSConfiguration>",
    b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><d>&x;</d>',
]
TOKENS = [
    b"<",
    b">",
    b"</",
    b"/>",
    b"&",
    b"&amp;",
    b"&#0;",
    b"&#xD800;",
    b"<![CDATA[",
    b"]]>",
    b"<!--",
    b"-->",
    b"<?xml",
    b'<?xml version="1.0" encoding="bogus"?>',
    b'encoding="rot13"',
    b"<!DOCTYPE",
    b"<!ENTITY",
    b'xmlns:a="x"',
    b"a:",
    b"\x00",
    b"\xff",
    b"\xef\xbb\xbf",
    b"\xfe\xff",
    b"<Object>",
    b"<Key>",
    b"</Key>",
]


def outcome(function, body: bytes) -> object:
    """What `function(body)` returns, or the S3Error it raised (always MalformedXML)."""
    try:
        return function(body)
    except S3Error as error:
        assert isinstance(error, MalformedXML), error
        assert error.status == 400
        return error


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    body = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(min_value=1, max_value=5))):
        at = draw(st.integers(min_value=0, max_value=len(body)))
        piece = draw(st.sampled_from(TOKENS) | st.binary(max_size=8))
        match draw(st.sampled_from(["insert", "delete", "replace", "truncate"])):
            case "insert":
                body = body[:at] + piece + body[at:]
            case "delete":
                body = body[:at] + body[at + draw(st.integers(0, 16)) :]
            case "replace":
                body = body[:at] + piece + body[at + len(piece) :]
            case _:
                body = body[:at]
    return body


bodies = mutated() | st.binary(max_size=300) | st.lists(st.sampled_from(TOKENS)).map(b"".join)
encodings = st.sampled_from(
    ["UTF-8", "utf-16", "bogus", "rot13", "hex", "base64", "zlib", "idna", "utf-7", "cp037", ""]
) | st.text(max_size=12)


@given(bodies)
def test_parse_returns_or_refuses(body: bytes) -> None:
    outcome(parse, body)


@given(bodies)
def test_delete_parser_returns_or_refuses(body: bytes) -> None:
    result = outcome(parse_delete, body)
    if not isinstance(result, S3Error):
        quiet, keys = result
        assert isinstance(quiet, bool) and 1 <= len(keys) <= MAX_DELETE_KEYS


@given(encodings, st.sampled_from(["utf-8", "utf-16", "latin-1"]))
def test_any_declared_encoding_parses_or_refuses(encoding: str, wire: str) -> None:
    text = (
        f'<?xml version="1.0" encoding="{encoding}"?><Delete><Object><Key>k</Key></Object></Delete>'
    )
    body = text.encode(wire, "surrogatepass" if wire.startswith("utf") else "replace")
    outcome(parse_delete, body)


@pytest.mark.parametrize(
    "encoding", ["bogus", "rot13", "hex", "base64", "zlib", "mbcs", "idna", "punycode"]
)
def test_unknown_or_non_text_encoding_is_malformed(encoding: str) -> None:
    body = (
        f'<?xml version="1.0" encoding="{encoding}"?><Delete><Object><Key>k</Key></Object></Delete>'
    )
    with pytest.raises(MalformedXML):
        parse_delete(body.encode())


@pytest.mark.parametrize("encoding", ["UTF-8", "utf-8", "US-ASCII", "ISO-8859-1"])
def test_expat_encodings_still_parse(encoding: str) -> None:
    body = (
        f"<?xml version='1.0' encoding='{encoding}'?><Delete><Object><Key>k</Key></Object></Delete>"
    )
    assert parse_delete(body.encode()) == (False, [("k", None)])


def test_utf16_body_declaring_bogus_encoding_is_malformed() -> None:
    body = '<?xml version="1.0" encoding="bogus"?><Delete/>'.encode("utf-16")
    with pytest.raises(MalformedXML):
        parse(body)


def test_deep_nesting_is_refused_at_once() -> None:
    """2 MB of `<a>` once held the event loop for seconds; now the 33rd level is refused."""
    with pytest.raises(MalformedXML):
        parse(b"<Delete>" + b"<a>" * 600_000)
    nested = b"<a>" * MAX_DEPTH + b"</a>" * MAX_DEPTH
    assert parse(nested).tag == "a"
    with pytest.raises(MalformedXML):
        parse(b"<r>" + nested + b"</r>")


def test_element_count_is_bounded() -> None:
    with pytest.raises(MalformedXML):
        parse(b"<r>" + b"<a/>" * MAX_ELEMENTS + b"</r>")
    assert len(parse(b"<r>" + b"<a/>" * (MAX_ELEMENTS - 1) + b"</r>")) == MAX_ELEMENTS - 1


def test_namespaces_are_stripped() -> None:
    body = b'<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Object><Key>k</Key>'
    body += b'</Object><x:Quiet xmlns:x="urn:x">true</x:Quiet></Delete>'
    assert parse_delete(body) == (True, [("k", None)])


@given(st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=5), st.booleans())
def test_rendered_keys_round_trip(keys: list[str], quiet: bool) -> None:
    """Keys any client can send (escaped as an SDK would) come back exactly, or are refused."""
    objects = "".join(f"<Object><Key>{escape(k)}</Key></Object>" for k in keys)
    body = f"<Delete><Quiet>{str(quiet).lower()}</Quiet>{objects}</Delete>"
    result = outcome(parse_delete, body.encode("utf-8", "surrogatepass"))
    if not isinstance(result, S3Error):
        assert result == (quiet, [(k, None) for k in keys])
