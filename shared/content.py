"""File content on the wire: UTF-8 text when it is text, base64 when it is not."""

from __future__ import annotations

import base64
import binascii

from shared.errors import BadRequest


def decode_content(content: str, encoding: str, field: str = "content") -> bytes:
    """The bytes a request's ``content`` + ``encoding`` stand for; 400 when they do not decode."""
    if encoding == "base64":
        try:
            raw = content.encode("ascii")
            decoded = binascii.a2b_base64(raw, strict_mode=True)
        except (binascii.Error, ValueError):
            raise BadRequest(f"{field}: not valid base64") from None
        # Only the canonical form (as btoa and every encoder write it): no stray padding.
        if base64.b64encode(decoded) != raw:
            raise BadRequest(f"{field}: not canonical base64 (padding or trailing bits)")
        return decoded
    try:
        return content.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(f"{field}: not valid UTF-8 text (use encoding 'base64')") from None


def encode_content(data: bytes) -> tuple[str, str]:
    """(content, encoding) for a response: text as is, anything else as base64."""
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), "base64"
