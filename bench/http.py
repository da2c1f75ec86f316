"""HTTP benchmark of the platform against bare Litestar baselines, in ONE run.

    .venv/bin/python -m bench.http [--duration 10] [--warmup 2] [--rounds 3] [--connections 32]

(as a module, from the repository's root: run as a script, this file would shadow the
standard library's ``http`` for every import; every bench runs as a module the same way).

Starts the gateway (``python -m ingress``, as the tests do) on a fresh database, and a bare
Litestar app (bench/baseline_app.py) on uvicorn with the same settings and the platform's
pool size, on the same database; prepares a user, workspaces and a 4 KiB file through the
public API; then measures with ``wrk --latency``:

  baseline   GET /api/health/ of the bare app (static JSON of the same shape)
  health     GET /api/health/ through the gateway (a database round trip at most once a second)
  db_get     GET /rows/32 of the bare app: ONE indexed SELECT of a 4 KiB row (no PUT writes it)
  file_get   GET /api/workspace/{id}/files/bench.txt, authenticated (4 KiB file)
  db_put     PUT /rows/{i} of the bare app: ONE committed upsert of a 4 KiB row, round 32 rows
  file_put   PUT /api/workspace/{id}/files/bench-put.txt, authenticated, 4 KiB JSON body,
             round the 32 workspaces of the user, a share per wrk thread (as 32 people saving)
  file_put_one  the same, all 32 connections on one file (saves serialize; informational)

and prints req/s, p50, p99 and each scenario's ratios to its reference (health to the bare
app, the file routes to the one-statement database baselines) next to the targets.
Results go to bench/results/http-<timestamp>.json (git-ignored). See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform as pyplatform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from tests.helpers import PASSWORD, free_port

FILE_BYTES = 4096
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"

PUT_WORKSPACES = 32
INFORMATIONAL = {"file_put_one": "db_put"}
REFERENCES = {"baseline", "baseline_end", "db_get", "db_put"}


@dataclass(frozen=True)
class Target:
    reference: str  # the scenario this one is measured against
    rps: float  # at least this share of the reference's req/s
    p99: float  # at most this multiple of the reference's p99


# Health against bare Litestar; the file routes against ONE statement on the same database:
# what the database allows, the platform's physical limit.
TARGETS = {
    "health": Target("baseline", 0.80, 4.0),
    "file_get": Target("db_get", 0.90, 1.5),
    "file_put": Target("db_put", 0.80, 1.5),
}


@dataclass
class Measure:
    name: str
    method: str
    url: str
    tool: str
    requests: int = 0
    rps: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    non_2xx: int = 0
    socket_errors: dict[str, int] = field(default_factory=dict)
    skipped: str | None = None
    raw: str = ""


# ---------------------------------------------------------------------------------------------
# processes


def wait_http(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the server exited at start:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url}: the server did not start:\n{log.read_text()[-4000:]}")
        time.sleep(0.05)


def stop_process(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def fresh_database() -> AbstractContextManager[str]:
    """A new empty database on DATABASE_URL's server, or on the embedded pgserver under
    .data/bench-pg; dropped afterwards (the tests' own recipe)."""
    from tests.helpers import fresh_database as make

    return make("cep_bench", "bench-pg")


def start_gateway(database_url: str, env: dict[str, str] | None = None) -> Any:
    """The platform exactly as the tests start it (tests.conftest.start_platform)."""
    from tests.conftest import start_platform

    return start_platform(database_url, {"LOG_LEVEL": "warning", **(env or {})})


def start_baseline(workdir: Path, database_url: str) -> tuple[subprocess.Popen[bytes], str, Path]:
    from shared.config import Settings

    pool = Settings.from_env().database  # the platform's pool size, as configured
    env = {
        **os.environ,
        "BENCH_DATABASE_URL": database_url,
        "DB_POOL_MIN": str(pool.pool_min),
        "DB_POOL_MAX": str(pool.pool_max),
    }
    port = free_port()
    log_path = workdir / "baseline.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "bench.baseline_app:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
                "--loop",
                "uvloop",
                "--http",
                "httptools",
                "--no-access-log",
                "--no-proxy-headers",  # the gateway reads X-Forwarded-For itself, not uvicorn
                "--log-level",
                "warning",
                "--lifespan",
                "on",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/api/health/", process, log_path)
    except BaseException:
        stop_process(process)
        raise
    return process, base, log_path


# ---------------------------------------------------------------------------------------------
# data through the public API


@dataclass
class Prepared:
    token: str | None = None
    workspace_id: str | None = None
    file_ok: bool = False
    # One workspace per connection for the PUT scenario: each user saves into their own.
    put_workspaces: list[str] = field(default_factory=list)
    put_one_workspace: str | None = None  # every connection saving one file, apart from GET's
    notes: list[str] = field(default_factory=list)


def prepare(base: str) -> Prepared:
    out = Prepared()
    content = ("bench-4k-" * (FILE_BYTES // 9 + 1))[:FILE_BYTES]
    username = f"bench_{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=base, timeout=30) as api:
        r = api.post(
            "/api/users/register",
            json={"username": username, "email": f"{username}@example.com", "password": PASSWORD},
        )
        if r.status_code != 201:
            out.notes.append(f"register -> {r.status_code}: {r.text[:300]}")
            return out
        r = api.post("/api/users/login", json={"username": username, "password": PASSWORD})
        if r.status_code != 200:
            out.notes.append(f"login -> {r.status_code}: {r.text[:300]}")
            return out
        out.token = r.json()["data"]["token"]
        api.cookies.clear()  # measure bearer auth only
        auth = {"Authorization": f"Bearer {out.token}"}
        r = api.post("/api/postgres_sessions/", json={"name": "bench"}, headers=auth)
        if r.status_code != 201:
            out.notes.append(
                f"create workspace POST /api/postgres_sessions/ -> {r.status_code}: {r.text[:300]}"
            )
            return out
        out.workspace_id = r.json()["data"]["id"]
        path = f"/api/workspace/{out.workspace_id}/files"
        r = api.post(path, json={"path": "bench.txt", "content": content}, headers=auth)
        if r.status_code == 404 and "workspace" not in r.text.lower():
            out.notes.append(f"POST {path} -> 404: the workspace function's routes are missing")
            return out
        if r.status_code not in (200, 201):
            out.notes.append(f"POST {path} -> {r.status_code}: {r.text[:300]}")
            return out
        got = api.get(f"{path}/bench.txt", headers=auth)
        if got.status_code != 200 or got.json()["data"]["content"] != content:
            out.notes.append(f"GET {path}/bench.txt -> {got.status_code}: {got.text[:300]}")
            return out
        out.file_ok = True
        # Saves never touch what the GET reads: a row saved thousands of times a second
        # leaves dead versions that any read of it walks until they are pruned.
        for i in range(PUT_WORKSPACES + 1):
            r = api.post("/api/postgres_sessions/", json={"name": f"bench-put-{i}"}, headers=auth)
            if r.status_code != 201:
                out.notes.append(f"create PUT workspace -> {r.status_code}: {r.text[:300]}")
                break
            out.put_workspaces.append(r.json()["data"]["id"])
        if len(out.put_workspaces) == PUT_WORKSPACES + 1:
            out.put_one_workspace = out.put_workspaces.pop()
            r = api.post(
                f"/api/workspace/{out.put_one_workspace}/files",
                json={"path": "bench-put.txt", "content": content},
                headers=auth,
            )
            if r.status_code != 201:
                out.notes.append(f"prepare file_put_one -> {r.status_code}: {r.text[:300]}")
                out.put_one_workspace = None
    return out


# ---------------------------------------------------------------------------------------------
# load generators

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        raise ValueError(f"unreadable wrk duration {text!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def parse_wrk(out: str, m: Measure) -> Measure:
    m.raw = out
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    if not (rps and total and p50 and p99):
        raise RuntimeError(f"could not read wrk's output:\n{out}")
    m.rps, m.requests = float(rps.group(1)), int(total.group(1))
    m.p50_ms, m.p99_ms = _ms(p50.group(1)), _ms(p99.group(1))
    non = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    m.non_2xx = int(non.group(1)) if non else 0
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock:
        m.socket_errors = dict(
            zip(("connect", "read", "write", "timeout"), map(int, sock.groups()), strict=True)
        )
    return m


def lua_script(
    method: str,
    headers: dict[str, str],
    body: str | None,
    paths: list[str] | None = None,
    threads: int = 1,
) -> str:
    def lit(text: str) -> str:
        assert "]==]" not in text
        return f"[==[{text}]==]"

    lines = [f"wrk.method = {lit(method)}"]
    lines += [f"wrk.headers[ {lit(k)} ] = {lit(v)}" for k, v in headers.items()]
    if body is not None:
        lines.append(f"wrk.body = {lit(body)}")
    if paths:
        # Each wrk thread takes its own share of the paths and goes round them, so with as
        # many paths as connections each path has about one request in flight: like people
        # saving into their own workspaces, not a crowd on one.
        per = max(1, len(paths) // threads)
        lines.append("paths = {" + ", ".join(lit(p) for p in paths) + "}")
        lines.append("local started = 0")
        lines.append(
            "function setup(thread) thread:set('first', started); started = started + 1 end"
        )
        lines.append("first, counter = 0, 0")
        lines.append(
            "request = function() counter = counter + 1; "
            f"return wrk.format(nil, paths[(first * {per} + counter % {per}) % #paths + 1]) end"
        )
    return "\n".join(lines) + "\n"


def run_wrk(
    wrk: str,
    m: Measure,
    headers: dict[str, str],
    body: str | None,
    seconds: float,
    args: argparse.Namespace,
    tmp: Path,
    paths: list[str] | None = None,
) -> Measure:
    script = tmp / f"{m.name}.lua"
    script.write_text(lua_script(m.method, headers, body, paths, args.threads))
    cmd = [
        wrk,
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        "--timeout",
        "10s",
        "-s",
        str(script),
        m.url,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr}{done.stdout}")
    return parse_wrk(done.stdout, m)


def run_httpx(
    m: Measure, headers: dict[str, str], body: str | None, seconds: float, args: argparse.Namespace
) -> Measure:
    """Fallback when wrk is missing: a small asyncio/httpx closed-loop generator. It is far
    slower than wrk and shares the CPU, so its figures are NOT comparable with wrk's."""

    async def main() -> tuple[int, int, list[float]]:
        latencies: list[float] = []
        bad = 0
        limits = httpx.Limits(
            max_connections=args.connections, max_keepalive_connections=args.connections
        )
        async with httpx.AsyncClient(limits=limits, timeout=10) as client:
            stop_at = time.monotonic() + seconds

            async def worker() -> None:
                nonlocal bad
                while time.monotonic() < stop_at:
                    t0 = time.perf_counter()
                    r = await client.request(
                        m.method, m.url, headers=headers, content=body.encode() if body else None
                    )
                    latencies.append((time.perf_counter() - t0) * 1000)
                    bad += not 200 <= r.status_code < 400

            await asyncio.gather(*(worker() for _ in range(args.connections)))
            return len(latencies), bad, latencies

    count, bad, lat = asyncio.run(main())
    lat.sort()
    m.requests, m.non_2xx, m.rps = count, bad, count / seconds
    if lat:
        m.p50_ms, m.p99_ms = lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    return m


def measure(
    name: str,
    method: str,
    url: str,
    headers: dict[str, str],
    body: str | None,
    args: argparse.Namespace,
    tmp: Path,
    wrk: str | None,
    paths: list[str] | None = None,
) -> Measure:
    # One request first: wrk counts only >= 400 as "Non-2xx or 3xx", so a redirect would pass.
    probe = httpx.request(
        method, url, headers=headers, content=body, timeout=30, follow_redirects=False
    )
    m = Measure(name, method, url, "wrk" if wrk else "httpx-fallback")
    if not 200 <= probe.status_code < 300:
        raise RuntimeError(f"{name}: {method} {url} -> {probe.status_code}: {probe.text[:400]}")
    print(f"  {name:<9} warm-up {args.warmup:g}s, measure {args.duration:g}s ...", flush=True)
    for seconds, keep in ((args.warmup, False), (args.duration, True)):
        if seconds <= 0:
            continue
        fresh = Measure(name, method, url, m.tool)
        if wrk:
            fresh = run_wrk(wrk, fresh, headers, body, seconds, args, tmp, paths)
        else:
            fresh = run_httpx(fresh, headers, body, seconds, args)
        if fresh.non_2xx or any(fresh.socket_errors.values()):
            after = httpx.request(method, url, headers=headers, content=body, timeout=30)
            raise RuntimeError(
                f"{name}: {fresh.non_2xx} non-2xx responses, socket errors "
                f"{fresh.socket_errors} during {'measure' if keep else 'warm-up'}:\n{fresh.raw}"
                f"one request right after: {after.status_code} {after.text[:400]}"
            )
        if keep:
            m = fresh
    return m


# ---------------------------------------------------------------------------------------------
# report


def verdicts(results: dict[str, Measure]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, target in TARGETS.items():
        m, ref = results.get(name), results.get(target.reference)
        if not m or m.skipped or not ref or ref.skipped or not ref.rps:
            continue
        rps_ratio = m.rps / ref.rps
        p99_ratio = (m.p99_ms / ref.p99_ms) if (m.p99_ms and ref.p99_ms) else None
        out[name] = {
            "reference": target.reference,
            "rps_ratio": rps_ratio,
            "p99_ratio": p99_ratio,
            "rps_target": target.rps,
            "p99_target": target.p99,
            "rps_pass": rps_ratio >= target.rps,
            "p99_pass": p99_ratio is not None and p99_ratio <= target.p99,
        }
    return out


def table(results: dict[str, Measure], checks: dict[str, dict[str, Any]]) -> str:
    head = (
        f"{'scenario':<13}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}  {'against':<9}"
        f"{'rps':>6}{'target':>8}{'p99':>7}{'target':>8}  verdict"
    )
    rows = [head, "-" * len(head)]
    for name, m in results.items():
        if m.skipped:
            rows.append(f"{name:<13}  SKIPPED: {m.skipped}")
            continue
        line = f"{name:<13}{m.rps:>8.0f}{m.p50_ms or 0:>8.2f}{m.p99_ms or 0:>8.2f}  "
        c = checks.get(name)
        ref = results.get(INFORMATIONAL.get(name, ""))
        if c:
            p99 = f"{c['p99_ratio']:.2f}x" if c["p99_ratio"] is not None else "-"
            ok = c["rps_pass"] and c["p99_pass"]
            why = [] if ok else (["req/s"] * (not c["rps_pass"]) + ["p99"] * (not c["p99_pass"]))
            rps_target = ">=" + format(c["rps_target"], ".0%")
            p99_target = "<=" + format(c["p99_target"], "g") + "x"
            line += (
                f"{c['reference']:<9}{c['rps_ratio'] * 100:>5.0f}%{rps_target:>8}"
                f"{p99:>7}{p99_target:>8}  "
                f"{'PASS' if ok else 'FAIL (' + ', '.join(why) + ')'}"
            )
        elif ref is not None and ref.rps and not ref.skipped:
            line += (
                f"{INFORMATIONAL[name]:<9}{m.rps / ref.rps * 100:>5.0f}%{'':>8}"
                f"{(m.p99_ms or 0) / (ref.p99_ms or 1):>6.2f}x{'':>8}  (informational)"
            )
        elif name == "baseline_end":
            line += "(the baseline again, to detect drift)"
        elif name in REFERENCES:
            line += "(reference)"
        rows.append(line)
    return "\n".join(rows)


def git_commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            text=True,
            capture_output=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


# ---------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10, help="seconds per scenario")
    parser.add_argument("--warmup", type=float, default=2, help="warm-up seconds per scenario")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="measure every scenario this often; report medians (one round on a shared 2-core "
        "machine moves a ratio by 15%%)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--only",
        nargs="*",
        choices=["baseline", "health", "db_get", "file_get", "db_put", "file_put", "file_put_one"],
        help="run only these scenarios (the baselines they are measured against run too)",
    )
    parser.add_argument(
        "--hold",
        action="store_true",
        help="after the run, keep the servers up until Ctrl-C (for profiling)",
    )
    args = parser.parse_args()

    # SIGTERM unwinds like Ctrl-C, so the finally blocks stop every subprocess.
    def on_term(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)

    wrk = shutil.which("wrk")
    if not wrk:
        print(
            "wrk is not installed (Debian/Ubuntu: sudo apt-get install wrk). Falling back to a "
            "SMALL asyncio/httpx load generator: its figures are NOT comparable with wrk's "
            "and understate the servers' capacity.",
            file=sys.stderr,
        )
    cores = os.cpu_count()
    print(
        f"bench/http.py: {args.connections} connections, {args.threads} threads, "
        f"{args.duration:g}s per scenario (+{args.warmup:g}s warm-up), load generator: "
        f"{'wrk' if wrk else 'httpx-fallback'}, {cores} CPU cores shared by the load "
        "generator, the servers and PostgreSQL (all on 127.0.0.1)",
        flush=True,
    )

    tmp = Path(tempfile.mkdtemp(prefix="cep-bench-"))
    results: dict[str, Measure] = {}
    prepared = Prepared()
    gateway = baseline = None
    scenarios = ["baseline", "health", "db_get", "file_get", "db_put", "file_put", "file_put_one"]
    wanted = set(args.only or scenarios) | {"baseline", "baseline_end"}
    wanted |= {TARGETS[n].reference for n in wanted if n in TARGETS}
    wanted |= {INFORMATIONAL[n] for n in wanted if n in INFORMATIONAL}
    load_start = os.getloadavg()
    try:
        with fresh_database() as database_url:
            try:
                baseline, baseline_url, _ = start_baseline(tmp, database_url)
                gateway = start_gateway(database_url)
                print(
                    f"gateway pid {gateway.process.pid} at {gateway.base_url}; "
                    f"baseline pid {baseline.pid} at {baseline_url}",
                    flush=True,
                )
                prepared = prepare(gateway.base_url)
                for note in prepared.notes:
                    print(f"NOTE: {note}", file=sys.stderr, flush=True)
                auth = {"Authorization": f"Bearer {prepared.token}"} if prepared.token else {}
                files = f"{gateway.base_url}/api/workspace/{prepared.workspace_id}/files"
                put_urls = [
                    f"{gateway.base_url}/api/workspace/{w}/files/bench-put.txt"
                    for w in prepared.put_workspaces
                ]
                put_paths = [httpx.URL(u).raw_path.decode() for u in put_urls]
                put_body = json.dumps({"content": ("put-4k-" * 600)[:FILE_BYTES]})
                row_paths = [f"/rows/{i}" for i in range(PUT_WORKSPACES)]
                json_type = {"Content-Type": "application/json"}
                plan: list[tuple[str, str, str, dict[str, str], str | None, str | None]] = [
                    ("baseline", "GET", baseline_url + "/api/health/", {}, None, None),
                    ("health", "GET", gateway.base_url + "/api/health/", {}, None, None),
                    # The row no PUT writes (rows 0..31 are db_put's), as file_get's workspace.
                    ("db_get", "GET", f"{baseline_url}/rows/{PUT_WORKSPACES}", {}, None, None),
                    (
                        "file_get",
                        "GET",
                        files + "/bench.txt",
                        auth,
                        None,
                        None if prepared.file_ok else "no 4 KiB file could be prepared (see NOTE)",
                    ),
                    ("db_put", "PUT", baseline_url + "/rows/0", json_type, put_body, None),
                    (
                        "file_put",
                        "PUT",
                        put_urls[0] if put_urls else files + "/bench-put.txt",
                        {**auth, "Content-Type": "application/json"},
                        put_body,
                        None if put_urls else "no workspaces could be prepared",
                    ),
                    # Every connection on the same file: saves serialize on the row (and the
                    # workspace lock) until each commit is on disk. Informational.
                    (
                        "file_put_one",
                        "PUT",
                        f"{gateway.base_url}/api/workspace/{prepared.put_one_workspace}"
                        "/files/bench-put.txt",
                        {**auth, "Content-Type": "application/json"},
                        put_body,
                        None if prepared.put_one_workspace else "no workspace could be prepared",
                    ),
                    # Again at the end: if the machine's load changed during the run, the two
                    # baselines differ and the ratios are not to be trusted.
                    ("baseline_end", "GET", baseline_url + "/api/health/", {}, None, None),
                ]
                # Every scenario once per round; each scenario's median round is reported, so
                # a burst of other work on a shared machine moves one round, not the verdict.
                rounds: dict[str, list[Measure]] = {}
                for round_number in range(args.rounds):
                    if args.rounds > 1:
                        print(f"round {round_number + 1} of {args.rounds}", flush=True)
                    for name, method, url, headers, body, skip in plan:
                        if name not in wanted:
                            continue
                        if skip:
                            results[name] = Measure(name, method, url, "-", skipped=skip)
                            continue
                        for proc, label, log in (
                            (gateway.process, "gateway", gateway.log_path),
                            (baseline, "baseline", tmp / "baseline.log"),
                        ):
                            if proc.poll() is not None:
                                raise RuntimeError(
                                    f"the {label} exited ({proc.returncode}) before "
                                    f"{name}:\n{log.read_text()[-3000:]}"
                                )
                        try:
                            rounds.setdefault(name, []).append(
                                measure(
                                    name,
                                    method,
                                    url,
                                    headers,
                                    body,
                                    args,
                                    tmp,
                                    wrk,
                                    {"file_put": put_paths, "db_put": row_paths}.get(name),
                                )
                            )
                        except httpx.TransportError as exc:
                            raise RuntimeError(
                                f"{name}: {method} {url}: {exc!r} (gateway exit code "
                                f"{gateway.process.poll()}, baseline exit code "
                                f"{baseline.poll()})\n{gateway.log()[-3000:]}"
                            ) from exc
                        except RuntimeError as exc:
                            if name == "baseline" or "-> 404" not in str(exc):
                                raise
                            print(f"NOTE: {exc}", file=sys.stderr)
                            results[name] = Measure(
                                name,
                                method,
                                url,
                                "-",
                                skipped="404: route missing (workspace function?)",
                            )
                for name, measured in rounds.items():
                    results[name] = sorted(measured, key=lambda m: m.rps)[len(measured) // 2]
                if args.hold:
                    print("holding the servers up; Ctrl-C to stop", flush=True)
                    while True:
                        time.sleep(3600)
            finally:
                if gateway is not None:
                    gateway.stop()
                    shutil.rmtree(gateway.workdir, ignore_errors=True)
                stop_process(baseline)
    except KeyboardInterrupt:
        print("\ninterrupted; servers stopped", file=sys.stderr)
        if not args.hold:
            return 130
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    checks = verdicts(results)
    print()
    print(table(results, checks))
    print(
        "\nTargets: health >= 80% of bare Litestar's req/s; the file GET >= 90% and the PUT "
        ">= 80% of one database statement's (db_get, db_put) with p99 <= 1.5x theirs, all "
        f"measured in this run. Same {cores}-core machine for load generator, servers and "
        "PostgreSQL: compare ratios, not absolute figures."
    )
    load_end = os.getloadavg()
    warnings = []
    first, last = results.get("baseline"), results.get("baseline_end")
    if first and last and first.rps and last.rps and abs(last.rps / first.rps - 1) > 0.15:
        warnings.append(
            f"the baseline drifted {first.rps:.0f} -> {last.rps:.0f} req/s during the "
            "run: the machine's load changed, ratios are unreliable; run again"
        )
    if max(load_start[0], load_end[0]) > (cores or 1):
        warnings.append(
            f"load average {load_start[0]:.1f} at start, {load_end[0]:.1f} at end on "
            f"{cores} cores: other work shares the CPU, figures are noisy"
        )
    for warning in warnings:
        print(f"WARNING: {warning}")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"http-{stamp}.json"
    out.write_text(
        json.dumps(
            {
                "timestamp": stamp,
                "commit": git_commit(),
                "machine": {
                    "cpus": cores,
                    "python": sys.version.split()[0],
                    "platform": pyplatform.platform(),
                },
                "settings": {
                    "connections": args.connections,
                    "threads": args.threads,
                    "duration_s": args.duration,
                    "warmup_s": args.warmup,
                    "tool": "wrk" if wrk else "httpx-fallback",
                    "file_bytes": FILE_BYTES,
                },
                "notes": prepared.notes,
                "warnings": warnings,
                "loadavg": {"start": load_start, "end": load_end},
                "results": {
                    k: {kk: vv for kk, vv in asdict(v).items() if kk != "raw"}
                    for k, v in results.items()
                },
                "checks": checks,
            },
            indent=2,
        )
    )
    print(f"results: {out.relative_to(ROOT)}")
    failed = [n for n, c in checks.items() if not (c["rps_pass"] and c["p99_pass"])]
    skipped = [n for n, m in results.items() if m.skipped]
    return 1 if failed or skipped else 0


if __name__ == "__main__":
    sys.exit(main())
