"""One user cannot slow another: a victim's API latency while an attacker burns CPU, forks
without end, or floods registration and login.

    .venv/bin/python -m bench.isolation                # ~2 min
    .venv/bin/python -m bench.isolation --seconds 5    # quick look

In ONE run against one platform (``python -m ingress``, as the tests start it, on a fresh
database): a victim reads a 4 KiB file at a steady pace (``--rate`` requests per second,
latency measured from when each request was due, so a stall is not hidden by a waiting
client) while the attacker, another user with a normal account, does one of:

  quiet          nothing (the baseline of the same run)
  cpu_burn       in each of its environments (the per-user quota allows --envs) as many
                 busy loops as there are cores, twice over
  fork_bomb      ``bomb() { bomb | bomb & }; bomb`` in each of its environments
  register_flood bursts of 48 parallel registrations of a taken name and 12
                 wrong-password logins, 5 a second, from its own address (a client
                 process of its own, as an attacker is)

Printed: the victim's p50/p99 per scenario and the ratio of each p99 to the quiet one
(target: <= 3x). Results land in bench/results/isolation-*.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect

from bench.http import fresh_database, start_gateway
from bench.stats import percentile
from tests.helpers import new_user, new_workspace

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
# 60 requests (48 registrations of a taken name, 12 wrong passwords) this many times a second
# from one address: 300 account requests/s. An unbounded closed-loop flood of HTTP requests is
# a denial of service at the connection level, which the ingress in front must rate-limit
# (every request still costs its HTTP parsing); what the platform must make sure of is that
# account requests cost nothing more once an address is over its budget.
FLOOD_BURSTS_PER_SECOND = 5
CHANNEL = "channel.v1.terminal"


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def paced_latencies(
    url: str, headers: dict[str, str], rate: float, seconds: float
) -> list[float]:
    """GET ``url`` every 1/rate s (at most 8 in flight); each latency from when it was due."""
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=8, max_keepalive_connections=8)
    async with httpx.AsyncClient(limits=limits, timeout=30, headers=headers) as client:
        gate = asyncio.Semaphore(8)

        async def one(due: float) -> None:
            async with gate:
                response = await client.get(url)
                if response.status_code != 200:
                    raise RuntimeError(f"victim's GET answered {response.status_code}")
                latencies.append((time.perf_counter() - due) * 1000)

        start = time.perf_counter()
        tasks = []
        n = 0
        while (due := start + n / rate) < start + seconds:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            tasks.append(asyncio.create_task(one(due)))
            n += 1
        await asyncio.gather(*tasks)
    return latencies


async def run_in_terminals(ws_base: str, headers: dict[str, str], ids: list[str], command: str):  # type: ignore[no-untyped-def]
    """Open a terminal in each workspace and type ``command``; the sockets stay open."""
    sockets = []
    for session_id in ids:
        ws = await connect(f"{ws_base}/api/terminal/ws/{session_id}", additional_headers=headers,
                           subprotocols=[CHANNEL], max_size=None)  # type: ignore[list-item]  # fmt: skip
        out = b""
        while b"$ " not in out:
            frame = await ws.recv()
            out += frame[1:] if frame[0] == 0 else b""
        await ws.send(b"\x00" + command.encode())
        sockets.append(ws)

    async def drain(ws: Any) -> None:  # take their output, as a browser would
        try:
            async for _ in ws:
                pass
        except Exception:  # noqa: BLE001 - the attacker's sockets may be closed under us
            pass

    tasks = [asyncio.create_task(drain(ws)) for ws in sockets]
    return sockets, tasks


async def register_flood(base: str, taken: str, seconds: float) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:

        async def register() -> None:
            body = {"username": taken, "email": f"{taken}@example.com", "password": "x" * 12}
            await client.post("/api/users/register", json=body)

        async def guess() -> None:
            await client.post("/api/users/login", json={"username": taken, "password": "wrong!!!"})

        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            burst = asyncio.gather(*(register() for _ in range(48)), *(guess() for _ in range(12)))
            await asyncio.gather(burst, asyncio.sleep(1 / FLOOD_BURSTS_PER_SECOND))


def flood_process(base: str, taken: str, seconds: float) -> None:
    """The attacker is another client, not the victim's: in a process of its own, so its
    bursts never delay the victim's requests inside the measuring client's event loop."""
    asyncio.run(register_flood(base, taken, seconds))


def summary(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "requests": len(ordered),
        "p50_ms": round(statistics.median(ordered), 2),
        "p99_ms": round(percentile(ordered, 0.99), 2),
    }


def prepare(base: str, envs: int) -> dict[str, Any]:
    """The victim with a 4 KiB file, the attacker with ``envs`` workspaces."""
    with httpx.Client(base_url=base, timeout=30) as api:
        victim, attacker = new_user(api), new_user(api)
    victim_ws = new_workspace(victim)
    file = {"path": "bench.txt", "content": "x" * 4096}
    victim.client.post(f"/api/workspace/{victim_ws}/files", json=file).raise_for_status()
    attacker_ws = [new_workspace(attacker) for _ in range(envs)]
    return {"victim": victim.headers, "attacker": attacker.headers, "victim_ws": victim_ws,
            "attacker_ws": attacker_ws}  # fmt: skip


async def scenarios(
    gateway: Any, setup: dict[str, Any], args: argparse.Namespace
) -> dict[str, dict[str, float]]:
    base, ws_base = gateway.base_url, gateway.ws_url
    victim, attacker = setup["victim"], setup["attacker"]
    victim_ws, attacker_ws = setup["victim_ws"], setup["attacker_ws"]
    url = f"{base}/api/workspace/{victim_ws}/files/bench.txt"
    results: dict[str, dict[str, float]] = {}

    async def measure(name: str) -> None:
        log(f"{name} ...")
        results[name] = summary(await paced_latencies(url, victim, args.rate, args.seconds))

    await measure("quiet")
    burners = " ".join(["while :; do :; done &"] * (2 * (os.cpu_count() or 2)))
    for name, command in (
        ("cpu_burn", f"{burners}\n"),
        ("fork_bomb", "bomb() { bomb | bomb & }; bomb\n"),
    ):
        sockets, tasks = await run_in_terminals(ws_base, attacker, attacker_ws, command)
        await asyncio.sleep(1)  # let it take hold
        await measure(name)
        async with httpx.AsyncClient(base_url=base, timeout=60) as api:
            for session_id in attacker_ws:
                await api.post(f"/workspace/{session_id}/shutdown", headers=attacker)
        for ws in sockets:
            await ws.close()
        for task in tasks:
            task.cancel()
    flood = multiprocessing.get_context("spawn").Process(
        target=flood_process, args=(base, "victim", args.seconds + 2)
    )
    flood.start()
    await asyncio.sleep(1)
    await measure("register_flood")
    await asyncio.to_thread(flood.join)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="per scenario")
    parser.add_argument("--rate", type=float, default=50.0, help="victim requests per second")
    parser.add_argument("--envs", type=int, default=3, help="attacker environments")
    args = parser.parse_args()
    with fresh_database() as database_url:
        gateway = start_gateway(
            database_url,
            {
                "MAX_ENVIRONMENTS_PER_USER": str(args.envs),
                "SANDBOX_WORKSPACE_MB": "64",
                # The platform's own limits, not the test suite's relaxed ones.
                "AUTH_REQUESTS_PER_SECOND": "10",
                "AUTH_REQUESTS_BURST": "30",
                "REGISTER_MAX_PER_ADDRESS": "20",
                "TRUSTED_PROXIES": "",
            },
        )
        try:
            setup = prepare(gateway.base_url, args.envs)
            results = asyncio.run(scenarios(gateway, setup, args))
        finally:
            gateway.stop()
    quiet = results["quiet"]["p99_ms"]
    print(f"{'scenario':16}{'requests':>10}{'p50 ms':>10}{'p99 ms':>10}{'p99/quiet':>12}  target")
    for name, r in results.items():
        ratio = r["p99_ms"] / quiet
        r["p99_over_quiet"] = round(ratio, 2)
        verdict = "" if name == "quiet" else ("<= 3x  ok" if ratio <= 3 else "<= 3x  MISSED")
        print(f"{name:16}{r['requests']:>10}{r['p50_ms']:>10}{r['p99_ms']:>10}{ratio:>12.2f}  "
              f"{verdict}")  # fmt: skip
    print(f"load average at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"isolation-{stamp}.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
