"""A local file, plain or compressed (.gz, .zst), opened as a streaming UTF-8 text stream.

Nothing is decompressed ahead of the reader: a multi-gigabyte `.jsonl.zst` shard of the Pile
or SlimPajama streams through in steps of `_READ_BYTES` compressed bytes. A truncated or corrupt archive raises while
reading (gzip: `gzip.BadGzipFile`/`EOFError`/`zlib.error`; zstd: `zstandard.ZstdError`), and
the file reader turns that into one UserError line.
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path
from typing import IO, Any

_READ_BYTES = 1 << 16  # compressed bytes fed to the zstd decoder per step
# `zstd --long=31` archives need a window larger than the library's default limit (2**27).
_ZSTD_MAX_WINDOW = 1 << 31


def open_text(path: Path, comp: str | None) -> IO[str]:
    """`path` as UTF-8 text; `comp` ("gz", "zst" or None for plain) says how to decompress it."""
    binary: IO[bytes]
    if comp == "gz":
        binary = gzip.open(path, "rb")
    elif comp == "zst":
        binary = io.BufferedReader(_ZstdRaw(open(path, "rb")), buffer_size=_READ_BYTES)
    else:
        binary = open(path, "rb")
    # utf-8-sig drops a BOM some editors write; universal newlines make \r\n files read alike.
    return io.TextIOWrapper(binary, encoding="utf-8-sig", newline=None)


class _ZstdRaw(io.RawIOBase):
    """Streaming zstd decoder that, unlike `stream_reader`, notices a truncated last frame.

    One decompressobj per frame: the Pile's archives are several concatenated frames.
    """

    def __init__(self, fh: IO[bytes]):
        import zstandard

        self._fh = fh
        self._dctx = zstandard.ZstdDecompressor(max_window_size=_ZSTD_MAX_WINDOW)
        self._dobj: Any = None
        self._pending = b""
        self._offset = 0
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while self._offset >= len(self._pending):
            if self._eof:
                return 0
            self._decode_more()
        n = min(len(buffer), len(self._pending) - self._offset)
        buffer[:n] = self._pending[self._offset : self._offset + n]
        self._offset += n
        return n

    def _decode_more(self) -> None:
        import zstandard

        data = self._fh.read(_READ_BYTES)
        if not data:
            self._eof = True
            if self._dobj is not None:
                raise zstandard.ZstdError("the data ends inside a frame (truncated file)")
            self._pending, self._offset = b"", 0
            return
        out = []
        while data:
            if self._dobj is None:
                self._dobj = self._dctx.decompressobj()
            out.append(self._dobj.decompress(data))
            if self._dobj.eof:
                data = self._dobj.unused_data
                self._dobj = None
            else:
                data = b""
        self._pending, self._offset = b"".join(out), 0

    def close(self) -> None:
        try:
            self._fh.close()
        finally:
            super().close()
