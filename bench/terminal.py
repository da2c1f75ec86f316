"""Terminal benchmark: the platform's WebSocket terminal next to a raw PTY and terminado.

    .venv/bin/python bench/terminal.py [--samples 300] [--flood-mb 50] [--idle 50]

In ONE run, with shells started the same way where it matters:
  raw        a PTY read loop in this process running ``bash --norc`` (no WebSocket at all)
  terminado  terminado's TermSocket on tornado, ``bash --norc``, over a WebSocket
  platform   ``WS /api/terminal/ws/{id}`` through the gateway (``python -m ingress``, as the
             tests start it), bash inside the bubblewrap sandbox

Measured: time from connect to the first prompt (platform: for an existing small workspace
whose environment is stopped, so materialization and the sandbox start are included, and
for a reattach); keystroke echo round trip p50/p99; throughput of a ``--flood-mb`` print;
server RSS per idle terminal with ``--idle`` open. Results: bench/results/terminal-*.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from typing import Any  # noqa: E402

import httpx  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402

from bench.http import free_port, fresh_database, start_gateway, stop_process  # noqa: E402

RESULTS = HERE / "results"
PASSWORD = "correct horse battery"
FLOOD_CMD = "yes 0123456789abcdef | head -c {n}; echo FLOOD''DONE\n"

TERMINADO_SERVER = """
import sys, tornado.ioloop, tornado.web, terminado
manager = terminado.UniqueTermManager(shell_command=["bash", "--norc"])
app = tornado.web.Application([(r"/ws", terminado.TermSocket, {"term_manager": manager})])
app.listen(int(sys.argv[1]), "127.0.0.1")
tornado.ioloop.IOLoop.current().start()
"""


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- transports: the same three operations over each ------------------------------------------


class RawPty:
    name = "raw"

    async def open(self) -> None:
        import pty

        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.environ.update(TERM="xterm-256color", PS1="$ ")
            os.execvp("bash", ["bash", "--norc"])
        os.set_blocking(self.fd, False)
        self.loop = asyncio.get_running_loop()

    async def read(self) -> str:
        while True:
            try:
                return os.read(self.fd, 65536).decode(errors="replace")
            except BlockingIOError:
                fut = self.loop.create_future()
                self.loop.add_reader(self.fd, fut.set_result, None)
                try:
                    await fut
                finally:
                    self.loop.remove_reader(self.fd)

    async def send(self, text: str) -> None:
        os.write(self.fd, text.encode())

    async def close(self) -> None:
        os.kill(self.pid, 9)
        os.waitpid(self.pid, 0)  # noqa: ASYNC222 - SIGKILLed: returns at once
        os.close(self.fd)


class Terminado:
    name = "terminado"

    def __init__(self, url: str) -> None:
        self.url = url

    async def open(self) -> None:
        self.ws = await connect(self.url, compression=None, max_size=None)
        await self.ws.send(json.dumps(["set_size", 24, 80, 24, 80]))

    async def read(self) -> str:
        while True:
            message = json.loads(await self.ws.recv())
            if message[0] == "stdout":
                return message[1]

    async def send(self, text: str) -> None:
        await self.ws.send(json.dumps(["stdin", text]))

    async def close(self) -> None:
        await self.ws.close()


class Platform:
    name = "platform"

    def __init__(self, url: str) -> None:
        self.url = url

    async def open(self) -> None:
        self.ws = await connect(self.url, compression=None, max_size=None)

    async def read(self) -> str:
        while True:
            message = await self.ws.recv()
            if isinstance(message, str):
                return message

    async def send(self, text: str) -> None:
        await self.ws.send(text)

    async def close(self) -> None:
        await self.ws.close()


async def until(term: Any, marker: str) -> None:
    tail = ""
    while marker not in tail:
        tail = (tail + await term.read())[-(len(marker) + 65536) :]


async def first_prompt(term: Any) -> float:
    start = time.perf_counter()
    await term.open()
    await until(term, "$ ")
    return (time.perf_counter() - start) * 1000


async def echo_rtt(term: Any, samples: int) -> list[float]:
    times = []
    for i in range(samples):
        char = "abcdefghij"[i % 10]
        start = time.perf_counter()
        await term.send(char)
        await until(term, char)
        times.append((time.perf_counter() - start) * 1000)
        if i % 50 == 49:
            await term.send("\x15")  # Ctrl-U: clear the typed line
    await term.send("\x15")
    return times


async def throughput(term: Any, megabytes: int) -> float:
    n = megabytes * 1_000_000
    await term.send(FLOOD_CMD.format(n=n))
    start = time.perf_counter()
    received, tail = 0, ""
    while "FLOODDONE" not in tail:
        chunk = await term.read()
        received += len(chunk)
        tail = (tail + chunk)[-64:]
    elapsed = time.perf_counter() - start
    return received / elapsed / 1e6


async def measure(make: Any, samples: int, flood_mb: int, repeats: int = 5) -> dict[str, Any]:
    prompts = []
    for _ in range(repeats):
        term = make()
        prompts.append(await first_prompt(term))
        await term.close()
    term = make()
    await first_prompt(term)
    rtt = await echo_rtt(term, samples)
    mbps = await throughput(term, flood_mb)
    await term.close()
    return {
        "first_prompt_ms_median": round(statistics.median(prompts), 2),
        "echo_p50_ms": round(pct(rtt, 0.5), 3),
        "echo_p99_ms": round(pct(rtt, 0.99), 3),
        "throughput_MBps": round(mbps, 1),
    }


async def idle_memory(pid: int, make: Any, count: int) -> float:
    before = rss_kib(pid)
    terms = []
    for i in range(count):
        term = make(i)
        await first_prompt(term)
        terms.append(term)
    await asyncio.sleep(1)  # let allocator churn settle before reading RSS
    after = rss_kib(pid)
    for term in terms:
        await term.close()
    return round((after - before) / count, 1)


# -- platform setup --------------------------------------------------------------------------------


def prepare_user(base: str, workspaces: int) -> tuple[str, list[str]]:
    with httpx.Client(base_url=base, timeout=30) as api:
        name = f"bench{int(time.time() * 1000) % 10**9}"
        api.post("/api/users/register", json={"username": name, "email": f"{name}@example.com",
                                              "password": PASSWORD})  # fmt: skip
        token = api.post("/api/users/login", json={"username": name, "password": PASSWORD}).json()[
            "data"
        ]["token"]
        headers = {"Authorization": f"Bearer {token}"}
        ids = []
        for i in range(workspaces):
            ws = api.post("/api/postgres_sessions/", json={"name": f"b{i}"}, headers=headers)
            ws_id = ws.json()["data"]["id"]
            api.post(f"/api/workspace/{ws_id}/ensure-defaults", headers=headers)
            ids.append(ws_id)
        return token, ids


async def run(args: argparse.Namespace, gateway: Any) -> dict[str, Any]:
    results: dict[str, Any] = {}
    log("raw PTY ...")
    results["raw"] = await measure(RawPty, args.samples, args.flood_mb)
    log("terminado ...")

    port = free_port()
    terminado = subprocess.Popen(  # noqa: ASYNC220 - once, before measuring
        [sys.executable, "-c", TERMINADO_SERVER, str(port)], env={**os.environ, "PS1": "$ "}
    )
    try:
        url = f"ws://127.0.0.1:{port}/ws"
        for _ in range(200):
            try:
                ws = await connect(url)
                await ws.close()
                break
            except OSError:
                await asyncio.sleep(0.05)
        results["terminado"] = await measure(lambda: Terminado(url), args.samples, args.flood_mb)
        results["terminado"]["idle_KiB_per_terminal"] = await idle_memory(
            terminado.pid, lambda i: Terminado(url), args.idle
        )
    finally:
        stop_process(terminado)

    log("platform ...")
    base = gateway.base_url
    token, ids = prepare_user(base, args.idle + 1)
    ws_url = f"{gateway.ws_url}/api/terminal/ws/{{}}?token={token}"
    headers = {"Authorization": f"Bearer {token}"}

    def cold() -> Platform:  # stop the environment first: a start from the database
        httpx.post(f"{base}/workspace/{ids[0]}/shutdown", headers=headers, timeout=30)
        return Platform(ws_url.format(ids[0]))

    measured = await measure(cold, args.samples, args.flood_mb)
    reattach = []
    for _ in range(5):
        term = Platform(ws_url.format(ids[0]))
        reattach.append(await first_prompt(term))
        await term.close()
    measured["reattach_prompt_ms_median"] = round(statistics.median(reattach), 2)
    measured["idle_KiB_per_terminal"] = await idle_memory(
        gateway.process.pid, lambda i: Platform(ws_url.format(ids[i + 1])), args.idle
    )
    results["platform"] = measured
    return results


TARGETS = """targets (issue 3): first prompt <= 30 ms; echo p50 <= 1 ms, p99 <= 3 ms;
throughput >= 60 MB/s and above terminado's; <= 128 KiB per idle terminal"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--flood-mb", type=int, default=50)
    parser.add_argument("--idle", type=int, default=50)
    args = parser.parse_args()
    with fresh_database() as database_url:
        gateway = start_gateway(database_url)
        try:
            results = asyncio.run(run(args, gateway))
        finally:
            gateway.stop()
    keys = sorted({k for r in results.values() for k in r})
    print(f"{'':32}" + "".join(f"{name:>12}" for name in results))
    for key in keys:
        print(f"{key:32}" + "".join(f"{str(r.get(key, '-')):>12}" for r in results.values()))
    print(TARGETS)
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"terminal-{stamp}.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
