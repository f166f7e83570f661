"""A .json file holding one JSON array of records, decoded one element at a time.

`json.load` would hold the whole array (and its decoded objects) in memory; this reads the
stream through a sliding window and hands each element to `json.JSONDecoder.raw_decode`, so
memory holds one window (1M characters, or one element if larger), not the file. Line numbers
in errors stay exact while the window slides.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import IO, Iterator

from cpt.data.readers.records import text_of
from cpt.errors import UserError

_JSON_CHUNK_CHARS = 1 << 20
# A JSON array element larger than this is taken as a broken file rather than read on to EOF.
_MAX_JSON_RECORD_CHARS = 1 << 28

_JSON_WS = re.compile(r"[ \t\n\r]*")


class _JsonBuffer:
    """A sliding window over a text stream for decoding a JSON array one element at a time."""

    def __init__(self, fh: IO[str]):
        self.fh = fh
        self.text = ""
        self.pos = 0
        self.base = 0  # stream offset of text[0]
        # Newlines are counted once, up to stream offset `mark`, so line numbers stay linear.
        self.mark = 0
        self.mark_lines = 0
        self.eof = False

    def fill(self, at_least: int = _JSON_CHUNK_CHARS) -> bool:
        if self.eof:
            return False
        chunk = self.fh.read(at_least)
        if not chunk:
            self.eof = True
            return False
        self.line()  # count the newlines about to leave the window
        self.base += self.pos
        self.text = self.text[self.pos :] + chunk
        self.pos = 0
        return True

    def peek(self) -> str | None:
        """Skip whitespace; the next character, or None at the end of the stream."""
        while True:
            self.pos = _JSON_WS.match(self.text, self.pos).end()
            if self.pos < len(self.text):
                return self.text[self.pos]
            if not self.fill():
                return None

    def line(self, at: int | None = None) -> int:
        """1-based line number of window index `at` (default: the current position)."""
        at = self.pos if at is None else at
        marked = self.mark - self.base
        if at >= marked:
            self.mark_lines += self.text.count("\n", marked, at)
            self.mark = self.base + at
            return self.mark_lines + 1
        return self.mark_lines - self.text.count("\n", at, marked) + 1


def json_array_docs(fh: IO[str], path: Path, text_field: str, key: str) -> Iterator[str]:
    """The text of each element of the one JSON array `fh` holds; UserError, with the line
    number, for invalid JSON, an unclosed array or anything after its ']'."""
    decoder = json.JSONDecoder()
    buf = _JsonBuffer(fh)
    allowed = "a .json file must hold JSON lines or one JSON array of objects"

    def invalid(reason: str, line: int) -> UserError:
        return UserError(f"{key}: {path} line {line}: invalid JSON ({reason}); {allowed}")

    buf.peek()
    buf.pos += 1  # the '[' that chose this reader
    index = 0
    char = buf.peek()
    if char == "]":
        buf.pos += 1
    while char != "]":
        if char is None:
            raise invalid("the file ends before the array is closed", buf.line())
        while True:
            try:
                record, end = decoder.raw_decode(buf.text, buf.pos)
                break
            except json.JSONDecodeError as e:
                # Most likely the element runs past the window: read more (doubling, so a big
                # element is not re-parsed many times) unless the stream is done.
                size = max(_JSON_CHUNK_CHARS, len(buf.text) - buf.pos)
                if len(buf.text) - buf.pos > _MAX_JSON_RECORD_CHARS or not buf.fill(size):
                    raise invalid(e.msg, buf.line(e.pos)) from None
        line = buf.line()
        buf.pos = end
        index += 1
        yield text_of(record, path, f"array element {index} (line {line})", text_field, key)
        char = buf.peek()
        if char == ",":
            buf.pos += 1
            char = buf.peek()
            if char == "]":
                raise invalid("trailing comma before ']'", buf.line())
        elif char == "]":
            buf.pos += 1
        elif char is None:
            raise invalid("the file ends before the array is closed", buf.line())
        else:
            raise invalid(f"expected ',' or ']' after an element, found {char!r}", buf.line())
    if buf.peek() is not None:
        raise invalid("extra data after the closing ']'", buf.line())
