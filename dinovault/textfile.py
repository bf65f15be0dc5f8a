"""Text files a user edits (params.yaml, pin registries): decoded as UTF-8, or one error naming file and line."""

from __future__ import annotations

from .errors import DinovaultError


def decode_utf8(data: bytes, source: str, error: type[DinovaultError]) -> str:
    """``data`` as text (a UTF-8 byte-order mark is dropped); ``error`` at ``source:LINE`` if it is not UTF-8."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - data.rfind(b"\n", 0, err.start)
        raise error(
            f"{source}:{line}: not UTF-8 text (byte 0x{data[err.start]:02x} at column {column}) / "
            f"第 {line} 行不是 UTF-8 编码",
            "save the file as UTF-8, e.g. iconv -f GBK -t UTF-8 / 请以 UTF-8 编码保存，例如 iconv -f GBK -t UTF-8",
        ) from None
