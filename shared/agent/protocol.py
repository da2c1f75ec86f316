"""The wire protocol between the platform and an environment agent (stdlib only).

A connection is a stream (a unix socket locally, TCP on the pod network in Kubernetes) of
frames: one kind byte, a 4-byte big-endian length, the payload. A JSON frame carries one
UTF-8 JSON object; a DATA frame carries raw bytes (file contents, terminal input or output).

Opening: the agent sends ``{"hello": "cep-agent", "version": 1, "nonce": <hex>}``; the client
answers ``{"auth": <HMAC-SHA256(secret, nonce) hex>, "mode": "rpc" | "attach", ...}``; the
agent answers ``{"ok": true}`` or closes. The secret never crosses the wire.

``rpc`` connections carry requests one at a time: a JSON frame ``{"op": ..., ...}``, for some
operations followed by DATA frames, answered by ``{"ok": true, ...}`` (plus DATA frames where
the operation returns bytes) or ``{"ok": false, "error": <code>, "message": ...}``.

``attach`` connections are one terminal viewer: DATA frames both ways are terminal output
and input; JSON frames are events from the agent (``{"event": "ready"}``,
``{"event": "exit", "code": n}``, ``{"event": "close", "code": 4008, "reason": ...}``) and
controls from the client (``{"op": "resize", "cols": c, "rows": r}``).

Both sides bound what they accept (``MAX_JSON``, ``MAX_DATA``): the agent runs as the
sandbox user and the platform treats everything it says like user input.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import struct
from typing import Any

VERSION = 1
HELLO = "cep-agent"
JSON, DATA = 1, 2
HEADER = struct.Struct(">BI")
MAX_JSON = 4 * 1024 * 1024  # a scan of thousands of entries fits
MAX_DATA = 16 * 1024 * 1024  # the largest file either side moves in one frame
AUTH_LABEL = b"cep-agent-auth\x00"

# Error codes of failed operations (``{"ok": false, "error": ...}``): "missing" (nothing at
# that path), "too_large", "not_file", "unsafe" (a symlink or a file where a directory is
# needed), "invalid" (a malformed request), "failed" (any other OS error), and the two the
# platform acts on:
E_CONFLICT = "conflict"  # the file is not what the caller expected
E_NO_SPACE = "no_space"  # the workspace volume is full


class ProtocolError(Exception):
    """The peer sent something outside the protocol (or went away mid-frame)."""


def mac(secret: bytes, nonce: str) -> str:
    return hmac.new(secret, AUTH_LABEL + nonce.encode(), hashlib.sha256).hexdigest()


def mac_matches(secret: bytes, nonce: str, presented: object) -> bool:
    return isinstance(presented, str) and hmac.compare_digest(mac(secret, nonce), presented)


def encode_json(message: dict[str, Any]) -> bytes:
    payload = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
    return HEADER.pack(JSON, len(payload)) + payload


def encode_data(data: bytes) -> bytes:
    return HEADER.pack(DATA, len(data)) + data


async def read_frame(
    reader: asyncio.StreamReader, max_json: int = MAX_JSON, max_data: int = MAX_DATA
) -> tuple[int, Any]:
    """The next (kind, payload): a dict for JSON, bytes for DATA. EOF before a frame starts
    raises EOFError; anything malformed or oversized raises ProtocolError."""
    try:
        header = await reader.readexactly(HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            raise EOFError from None
        raise ProtocolError("truncated frame header") from None
    kind, length = HEADER.unpack(header)
    if kind == JSON:
        if length > max_json:
            raise ProtocolError(f"JSON frame of {length} bytes")
    elif kind == DATA:
        if length > max_data:
            raise ProtocolError(f"DATA frame of {length} bytes")
    else:
        raise ProtocolError(f"unknown frame kind {kind}")
    try:
        payload = await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        raise ProtocolError("truncated frame") from None
    if kind == DATA:
        return DATA, payload
    try:
        message = json.loads(payload)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ProtocolError("malformed JSON frame") from None
    if not isinstance(message, dict):
        raise ProtocolError("a JSON frame must hold an object")
    return JSON, message


async def read_json(reader: asyncio.StreamReader, max_json: int = MAX_JSON) -> dict[str, Any]:
    kind, payload = await read_frame(reader, max_json=max_json)
    if kind != JSON:
        raise ProtocolError("expected a JSON frame")
    return payload  # type: ignore[no-any-return]


async def read_data(reader: asyncio.StreamReader, max_data: int = MAX_DATA) -> bytes:
    kind, payload = await read_frame(reader, max_data=max_data)
    if kind != DATA:
        raise ProtocolError("expected a DATA frame")
    return payload  # type: ignore[no-any-return]
