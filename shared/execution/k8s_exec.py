"""Exec into a pod with the official client: one ApiClient per stream, binary frames.

``kubernetes.stream.stream()`` patches the ApiClient it is given for the duration of the
call and its WSClient is not thread-safe, so every exec gets a fresh ApiClient. We read the
WebSocket one frame at a time instead of through ``WSClient.update()``: ``update()`` drains
every frame already available (unbounded during a flood) and, because ``stream()`` always
enables ``capture_all``, also copies all output into a buffer that is never emptied. One
frame at a time keeps a shell's memory to a single frame and lets the caller set the pace.

Everything in this module blocks; callers run it in worker threads.
"""

from __future__ import annotations

import io
import json
import logging
import select
import ssl
import threading
import time
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes.stream import stream
from websocket import ABNF, WebSocketException

from shared.execution.base import ExecutionError
from shared.execution.pod_spec import CONTAINER_NAME

log = logging.getLogger(__name__)

STDIN, STDOUT, STDERR, STATUS, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
V5_PROTOCOL = "v5.channel.k8s.io"
STDIN_CHUNK = 64 * 1024


def exit_code_from_status(raw: bytes) -> int:
    """The exit code in a channel 3 v1 Status: 0 for Success, details.causes ExitCode else."""
    try:
        status = json.loads(raw)
    except ValueError:
        return 1
    if status.get("status") == "Success":
        return 0
    for cause in (status.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode":
            try:
                return int(cause.get("message"))
            except (TypeError, ValueError):
                break
    log.warning("exec failed: %s", status.get("message"))
    return 1


class ExecStream:
    """One exec WebSocket, read frame by frame. Safe to write from one thread while another
    reads (websocket-client locks sends and receives separately)."""

    def __init__(self, ws: Any, api_client: client.ApiClient) -> None:
        self._ws = ws
        self._api_client = api_client
        self._write_lock = threading.Lock()
        self.closed = False
        self.exit_code: int | None = None

    @classmethod
    def open(
        cls,
        configuration: client.Configuration,
        namespace: str,
        pod: str,
        command: list[str],
        *,
        stdin: bool,
        tty: bool,
    ) -> ExecStream:
        api_client = client.ApiClient(configuration)
        try:
            ws = stream(
                client.CoreV1Api(api_client).connect_get_namespaced_pod_exec,
                pod,
                namespace,
                command=command,
                container=CONTAINER_NAME,
                stdin=stdin,
                stdout=True,
                stderr=not tty,
                tty=tty,
                binary=True,
                _preload_content=False,
            )
        except (ApiException, WebSocketException, OSError) as exc:
            api_client.close()
            log.warning("exec into %s/%s failed: %s", namespace, pod, exc)
            raise ExecutionError("The execution environment is not reachable.") from exc
        return cls(ws, api_client)

    @property
    def v5(self) -> bool:
        return self._ws.subprotocol == V5_PROTOCOL

    def send(self, channel: int, data: bytes) -> None:
        with self._write_lock:
            try:
                self._ws.write_channel(channel, data)
            except (WebSocketException, OSError) as exc:
                raise ExecutionError(
                    "The connection to the execution environment was lost."
                ) from exc

    def close_stdin(self) -> None:
        """Signal EOF on stdin (v5 only; on v4 the command must know where its input ends)."""
        if self.v5:
            with self._write_lock:
                self._ws.close_channel(STDIN)

    def read_frame(self, timeout: float) -> tuple[int, bytes] | None:
        """The next (channel, payload); None if nothing came within ``timeout`` seconds.
        Raises EOFError once the stream has ended."""
        if self.closed:
            raise EOFError
        sock = self._ws.sock
        try:
            raw = sock.sock
            if raw is None:
                raise EOFError
            # TLS may already hold decrypted frames that poll() cannot see.
            if not (isinstance(raw, ssl.SSLSocket) and raw.pending()):
                poller = select.poll()
                poller.register(raw, select.POLLIN)
                if not poller.poll(timeout * 1000):
                    return None
            opcode, frame = sock.recv_data_frame(True)
        except (WebSocketException, OSError, ValueError) as exc:
            self.closed = True
            raise EOFError from exc
        if opcode == ABNF.OPCODE_CLOSE:
            self.closed = True
            raise EOFError
        if opcode not in (ABNF.OPCODE_BINARY, ABNF.OPCODE_TEXT) or not frame.data:
            return None  # ping/pong
        data = frame.data if isinstance(frame.data, bytes) else frame.data.encode()
        if data[0] == STATUS:
            self.exit_code = exit_code_from_status(data[1:])
        return data[0], data[1:]

    def close(self) -> None:
        self.closed = True
        sock = self._ws.sock
        try:
            if sock.connected:
                sock.send_close()
            sock.abort()  # wakes a thread blocked in recv
            sock.shutdown()
        except (WebSocketException, OSError):
            pass
        finally:
            self._api_client.close()


def run_command(
    configuration: client.Configuration,
    namespace: str,
    pod: str,
    command: list[str],
    *,
    stdin: bytes | None = None,
    max_output: int = 256 * 1024 * 1024,
    timeout: float = 300.0,
) -> tuple[int, bytes, bytes]:
    """Run ``command`` to completion; (exit code, stdout, stderr). stderr is capped at 64 KiB."""
    exec_stream = ExecStream.open(
        configuration, namespace, pod, command, stdin=stdin is not None, tty=False
    )
    deadline = time.monotonic() + timeout
    out, err = io.BytesIO(), bytearray()
    try:
        if stdin is not None:
            view = memoryview(stdin)
            for start in range(0, len(view), STDIN_CHUNK):
                exec_stream.send(STDIN, bytes(view[start : start + STDIN_CHUNK]))
            exec_stream.close_stdin()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ExecutionError("A command in the execution environment timed out.")
            try:
                frame = exec_stream.read_frame(min(remaining, 5.0))
            except EOFError:
                break
            if frame is None:
                continue
            channel, payload = frame
            if channel == STDOUT:
                if out.tell() + len(payload) > max_output:
                    raise ExecutionError("A command in the execution environment said too much.")
                out.write(payload)
            elif channel == STDERR and len(err) < 65536:
                err += payload[: 65536 - len(err)]
    finally:
        exec_stream.close()
    code = exec_stream.exit_code if exec_stream.exit_code is not None else 1
    return code, out.getvalue(), bytes(err)
