"""File content on the wire: UTF-8 text when it is text, base64 when it is not."""

from __future__ import annotations

import base64
import binascii

from shared.errors import BadRequest


def decode_body(content: str, encoding: str, field: str = "content") -> bytes:
    """The bytes a request's ``content`` + ``encoding`` stand for."""
    if encoding == "base64":
        try:
            return base64.b64decode(content.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            raise BadRequest(f"{field}: not valid base64") from None
    try:
        return content.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(f"{field}: not valid UTF-8 text") from None


def encode_content(data: bytes) -> tuple[str, str]:
    """(content, encoding) for a response: text as is, anything else as base64."""
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), "base64"
