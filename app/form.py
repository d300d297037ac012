"""multipart/form-data of POST Object, parsed as a stream with python-multipart's push parser.

S3 requires the file to be the form's last field, so the body is read in two steps:
`read_fields` collects every field before the file part (bounded as AWS bounds them:
MaxPostPreDataLengthExceeded past 20 KiB) and returns as soon as the file part's headers
are read, before one byte of the file; the caller decides (policy, signature,
authorization) and only then `file()` streams the file's bytes from the socket into the
backend, a parser feed (64 KiB) at a time. Fields after the file are ignored, as S3 does.
Every malformed body is an S3 error (MalformedPOSTRequest), never a parser exception.

Parts before the file are fields whatever their headers say: python-requests' `files=`
sends every field with a filename, and S3 reads those as fields too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from enum import Enum

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from shoal.app.errors import (
    IncorrectNumberOfFilesInPostRequest,
    MalformedPOSTRequest,
    MaxPostPreDataLengthExceeded,
    PreconditionFailed,
)

#: AWS's limit on the bytes of a POST form before its file part.
MAX_PRE_DATA = 20 * 1024
#: The parser is fed at most this much at once: what is held of the file between two
#: reads of the backend.
FEED = 64 * 1024
#: Bytes after the file part read (and ignored) so that the connection can be reused;
#: past this the rest is left unread and the connection closed.
MAX_EPILOGUE = 64 * 1024
#: RFC 2046: a boundary is 1 to 70 characters.
MAX_BOUNDARY = 70
FILE_FIELD = "file"


class _Stage(Enum):
    FIELDS = 1  # parts before the file: collected
    FILE = 2  # inside the file part: streamed
    AFTER = 3  # the file part has ended: the rest is ignored


def boundary_of(content_type: str) -> bytes:
    """The boundary of a `multipart/form-data` Content-Type header."""
    kind, options = parse_options_header(content_type)
    if kind != b"multipart/form-data":
        raise PreconditionFailed(
            Condition="Bucket POST must be of the enclosure-type multipart/form-data"
        )
    boundary = options.get(b"boundary", b"")
    if not 0 < len(boundary) <= MAX_BOUNDARY:
        raise MalformedPOSTRequest()
    return boundary


class PostForm:
    """One POST Object body: `await read_fields()`, then iterate `file()` once."""

    def __init__(self, content_type: str, source: AsyncIterator[bytes]) -> None:
        self._parser = MultipartParser(
            boundary_of(content_type),
            callbacks={
                "on_part_begin": self._part_begin,
                "on_header_field": self._header_field,
                "on_header_value": self._header_value,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
                "on_end": self._end,
            },
        )
        self._source = source
        self._pending = b""  # received, not yet fed to the parser
        self._stage = _Stage.FIELDS
        self._ended = False  # the closing boundary was parsed
        self._pre_data = 0
        self._overhead = len(self._parser.boundary) + 2  # "\r\n--" boundary "\r\n"
        self._header_name = bytearray()
        self._header_value_buf = bytearray()
        self._part_headers: dict[bytes, bytes] = {}
        self._part_name: str | None = None
        self._value = bytearray()
        self._file_data: list[bytes] = []
        self.fields: dict[str, str] = {}
        #: The file part's filename (for `${filename}` in the key), "" if none.
        self.filename = ""

    async def read_fields(self) -> dict[str, str]:
        """The fields before the file part (names lower-case; a repeated name: the last)."""
        while self._stage is _Stage.FIELDS:
            if not await self._step():
                if self._ended:
                    raise IncorrectNumberOfFilesInPostRequest()
                raise MalformedPOSTRequest()
        return self.fields

    async def file(self) -> AsyncIterator[bytes]:
        """The file's bytes as they arrive; ends once its part is closed by a boundary."""
        while True:
            if self._file_data:
                data = b"".join(self._file_data)
                self._file_data.clear()
                yield data
            if self._stage is not _Stage.FILE:
                break
            if not await self._step():
                raise MalformedPOSTRequest()  # the body ended inside the file part
        await self._drain()

    async def _step(self) -> int:
        """Feed the parser one slice of the body: its size, 0 at the end of the body."""
        if not self._pending:
            chunk = await anext(self._source, None)
            if chunk is None:
                return 0
            self._pending = chunk
        data, self._pending = self._pending[:FEED], self._pending[FEED:]
        try:
            self._parser.write(data)
        except FormParserError as exc:
            raise MalformedPOSTRequest() from exc
        return len(data)

    async def _drain(self) -> None:
        """Read a bounded amount of what follows the file (ignored, as the parser ignores
        what follows the closing boundary) so that the connection can be reused."""
        left = MAX_EPILOGUE
        try:
            while left > 0 and (fed := await self._step()):
                left -= fed
        except MalformedPOSTRequest:
            return  # a malformed tail after the file does not matter: S3 ignores it

    # python-multipart callbacks (synchronous, inside `write`).

    def _count(self, size: int) -> None:
        if self._stage is _Stage.FIELDS:
            self._pre_data += size
            if self._pre_data > MAX_PRE_DATA:
                raise MaxPostPreDataLengthExceeded(MaxPostPreDataLengthBytes=MAX_PRE_DATA)

    def _part_begin(self) -> None:
        self._count(self._overhead)
        self._part_headers = {}
        self._part_name = None
        self._value.clear()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._count(end - start)
        self._header_name += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._count(end - start)
        self._header_value_buf += data[start:end]

    def _header_end(self) -> None:
        name = bytes(self._header_name).strip().lower()
        self._part_headers[name] = bytes(self._header_value_buf).strip()
        self._header_name.clear()
        self._header_value_buf.clear()

    def _headers_finished(self) -> None:
        if self._stage is not _Stage.FIELDS:
            return
        kind, options = parse_options_header(self._part_headers.get(b"content-disposition"))
        if kind != b"form-data" or b"name" not in options:
            raise MalformedPOSTRequest()
        name = _text(options[b"name"]).lower()
        if name == FILE_FIELD:
            self._stage = _Stage.FILE
            self.filename = _text(options.get(b"filename", b""))
        else:
            self._part_name = name

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._stage is _Stage.FIELDS:
            self._count(end - start)
            self._value += data[start:end]
        elif self._stage is _Stage.FILE:
            self._file_data.append(data[start:end])

    def _part_end(self) -> None:
        if self._stage is _Stage.FILE:
            self._stage = _Stage.AFTER
        elif self._stage is _Stage.FIELDS and self._part_name is not None:
            self.fields[self._part_name] = _text(bytes(self._value))

    def _end(self) -> None:
        self._ended = True


def _text(raw: bytes) -> str:
    """Form text is UTF-8 (what browsers send); anything else is a malformed form."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedPOSTRequest() from exc
