"""Nothing a user saved or made in the terminal is lost: the sync integrity rules under attack.

Each test runs the real gateway with real sandboxes and drives both sides at once, a shell
and an API client, or injects a fault (a full sandbox disk, a frozen agent, a killed
gateway, a stopped database), then checks what ended up in the database and in the
environment.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import asyncpg
import httpx
import pytest

from tests.conftest import running_platform, start_platform
from tests.helpers import (
    Platform,
    User,
    eventually,
    new_user,
    new_workspace,
    sandbox_slots,
    session_slot,
    slot_pids,
)
from tests.terminal_client import Terminal, open_terminal, opened_shell
from tests.test_db_faults import FAULT_ENV, own_postgres

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(240)]

MIB = 1024 * 1024
QUOTA = 3 * MIB
SMALL_ENV = {
    "MAX_WORKSPACE_BYTES": str(QUOTA),
    "SANDBOX_WORKSPACE_MB": "16",  # the smallest volume: quick to fill
    "SYNC_RETRY_MAX_SECONDS": "2",
    "SYNC_INTERVAL_SECONDS": "3600",  # whatever syncs in these tests, it is not the timer
    "AGENT_TIMEOUT_SECONDS": "3",
}


@pytest.fixture(scope="module")
def tight_platform(database_url: str) -> Iterator[Platform]:
    """A platform with a small workspace quota, small sandbox disks and quick retries."""
    with running_platform(database_url, SMALL_ENV) as running:
        yield running


@contextlib.asynccontextmanager
async def owner_shell(platform: Platform) -> AsyncIterator[tuple[User, str, Terminal]]:
    """A new user's new workspace, and a terminal of it at its prompt."""
    owner = user_of(platform)
    workspace = new_workspace(owner)
    async with opened_shell(platform, owner, workspace) as term:
        yield owner, workspace, term


def user_of(platform: Platform) -> User:
    with httpx.Client(base_url=platform.base_url, timeout=30) as api:
        return new_user(api)


def listing(user: User, workspace: str) -> dict[str, int]:
    """path -> size of every file the API lists."""
    response = user.client.get(f"/api/workspace/{workspace}/files")
    assert response.status_code == 200, response.text
    return {e["path"]: e["size"] for e in response.json()["data"] if e["type"] == "file"}


def status_of(user: User, workspace: str) -> dict:
    response = user.client.get(f"/api/workspace/{workspace}/status")
    assert response.status_code == 200, response.text
    return response.json()["data"]


def text_of(user: User, workspace: str, path: str) -> httpx.Response:
    return user.client.get(f"/api/workspace/{workspace}/files/{path}")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


# -- neither side silently overwrites the other ----------------------------------------------


def edit_until(
    user: User, workspace: str, path: str, stop: threading.Event
) -> tuple[list[int], int]:
    """An editor saving ``content + "save K"`` with If-Match, re-reading on 412 (and on the
    409 of a file that keeps changing), until ``stop`` and then twice more. The K that got
    200, and how many of them did before ``stop``."""
    saved: list[int] = []
    k, after_stop, during = 0, 0, 0
    deadline = time.monotonic() + 120
    while after_stop < 2 and time.monotonic() < deadline:
        if stop.is_set():
            after_stop += 1
        k += 1
        got = text_of(user, workspace, path)
        assert got.status_code == 200, got.text
        put = user.client.put(
            f"/api/workspace/{workspace}/files/{path}",
            json={"content": got.json()["data"]["content"] + f"save {k}\n"},
            headers={"If-Match": got.headers["etag"]},
        )
        if put.status_code == 200:
            saved.append(k)
            during += 0 if stop.is_set() else 1
        else:
            assert put.status_code in (409, 412), put.text
            after_stop -= 1 if stop.is_set() else 0  # only saves count after the stop
    return saved, during


async def test_shell_appends_and_if_match_saves_at_the_same_time_lose_nothing(
    platform: Platform,
) -> None:
    owner = user_of(platform)
    workspace = new_workspace(owner)
    put = owner.client.put(f"/api/workspace/{workspace}/files/log.txt", json={"content": ""})
    assert put.status_code == 200, put.text
    async with opened_shell(platform, owner, workspace) as term:
        stop = threading.Event()
        await term.send(
            'for i in $(seq 200); do echo "line $i" >> log.txt; sleep 0.03; done; echo APP""ENDED\n'
        )
        async with anyio.create_task_group() as tg:

            async def editor() -> None:
                outcome.append(
                    await anyio.to_thread.run_sync(edit_until, owner, workspace, "log.txt", stop)
                )

            outcome: list[tuple[list[int], int]] = []
            tg.start_soon(editor)
            try:
                await term.until("APPENDED\r\n", within=90)
            finally:
                stop.set()
        ((saved, during),) = outcome
        final = text_of(owner, workspace, "log.txt").json()["data"]["content"]
        in_shell = await term.run("sha256sum log.txt | cut -c1-64")

    lines = final.splitlines()
    assert [x for x in lines if x.startswith("line ")] == [f"line {i}" for i in range(1, 201)]
    assert [int(x[5:]) for x in lines if x.startswith("save ")] == saved
    assert during > 0, "no save was accepted while the shell appended"
    assert status_of(owner, workspace)["sync_conflicts"] == []
    assert in_shell == hashlib.sha256(final.encode()).hexdigest()  # both sides agree


def sync_until(user: User, workspace: str, stop: threading.Event) -> int:
    """List the files again and again (each listing syncs the live workspace first)."""
    count = 0
    while not stop.is_set():
        listing(user, workspace)
        count += 1
    return count


async def test_syncs_racing_api_saves_never_make_them_stale(platform: Platform) -> None:
    owner = user_of(platform)
    workspace = new_workspace(owner)
    async with open_terminal(platform, owner, workspace) as ws:
        await Terminal(ws).ready()
        stop = threading.Event()
        syncer = threading.Thread(target=sync_until, args=(owner, workspace, stop))
        syncer.start()
        try:
            for i in range(40):
                # Nobody else writes these files: a version this client just got back must
                # still be the current one, whatever the syncs in between did.
                path = f"saved/{i % 4}.txt"
                first = owner.client.put(
                    f"/api/workspace/{workspace}/files/{path}", json={"content": f"{i}a\n"}
                )
                assert first.status_code == 200, first.text
                second = owner.client.put(
                    f"/api/workspace/{workspace}/files/{path}",
                    json={"content": f"{i}b\n"},
                    headers={"If-Match": f'"{first.json()["data"]["version"]}"'},
                )
                assert second.status_code == 200, (i, second.text)
        finally:
            stop.set()
            syncer.join(30)
    for k in range(4):
        assert text_of(owner, workspace, f"saved/{k}.txt").json()["data"]["content"] == (
            f"{36 + k}b\n"
        )


# -- one bad entry never blocks the rest -----------------------------------------------------


async def test_a_file_name_that_is_not_utf8_never_blocks_the_rest(platform: Platform) -> None:
    owner = user_of(platform)
    workspace = new_workspace(owner)
    normal = {"top.txt": "top\n", "d/n1.txt": "n1\n", "d/n2.txt": "n2\n", "d/e/deep.txt": "deep\n"}
    async with opened_shell(platform, owner, workspace) as term:
        await term.run("touch $'caf\\xe9.txt' && mkdir -p $'bad\\xff' && touch $'bad\\xff/x'")
        await term.run(" && ".join(f"mkdir -p $(dirname {p}) && printf '{c}' > {p}"
                                   for p, c in normal.items()))  # fmt: skip
        assert normal.keys() <= listing(owner, workspace).keys()
        skipped = status_of(owner, workspace)["sync_skipped"]
        assert {"path": "caf\\xe9.txt", "reason": "invalid path"} in skipped
        assert {"path": "bad\\xff", "reason": "invalid path"} in skipped

    shutdown = owner.client.post(f"/workspace/{workspace}/shutdown")
    assert shutdown.status_code == 200, shutdown.text
    assert shutdown.json()["data"]["container_cleaned"] is True
    assert status_of(owner, workspace)["execution"]["state"] == "stopped"
    async with open_terminal(platform, owner, workspace) as ws:  # a fresh environment
        term = Terminal(ws)
        await term.ready()
        for path, content in normal.items():
            assert await term.run(f"cat {path}") == content.rstrip("\n")


# -- sizes are enforced when reading, and the quota counts everything stored -----------------


def peak_rss_while(pid: int, done: threading.Event) -> int:
    peak = 0
    while not done.is_set():
        peak = max(peak, rss_bytes(pid))
        done.wait(0.01)
    return peak


@contextlib.asynccontextmanager
async def memory_growth(pid: int) -> AsyncIterator[list[int]]:
    """How far the process's RSS rose above its start during the block (in the list, once
    the block is over)."""
    before = rss_bytes(pid)
    done = threading.Event()
    grew: list[int] = []
    async with anyio.create_task_group() as tg:

        async def measure() -> None:
            grew.append(await anyio.to_thread.run_sync(peak_rss_while, pid, done) - before)

        tg.start_soon(measure)
        try:
            yield grew
        finally:
            done.set()


async def test_files_growing_between_scan_and_read_are_read_only_to_the_limit(
    platform: Platform,
) -> None:
    owner = user_of(platform)
    workspace = new_workspace(owner)
    limit = 1 * MIB  # MAX_FILE_BYTES
    async with opened_shell(platform, owner, workspace) as term:
        # Eight files, small at one moment and 40 MiB (sparse: no disk I/O) the next, while
        # the API makes the workspace sync again and again.
        async with memory_growth(platform.process.pid) as grew:
            await term.send(
                "for r in $(seq 60); do for i in 1 2 3 4 5 6 7 8; do echo s$r > g$i.bin; done; "
                "for i in 1 2 3 4 5 6 7 8; do truncate -s 40M g$i.bin; done; done; echo GR''OWN\n"
            )
            with anyio.fail_after(120):
                while "GROWN\r\n" not in term.text:
                    sizes = await anyio.to_thread.run_sync(listing, owner, workspace)
                    assert all(size <= limit for size in sizes.values()), sizes
                    with anyio.move_on_after(0.05):
                        await term.frame()

    sizes = listing(owner, workspace)
    assert all(size <= limit for size in sizes.values()), sizes
    skipped = status_of(owner, workspace)["sync_skipped"]
    for i in range(1, 9):
        assert {"path": f"g{i}.bin", "reason": "too large"} in skipped
    # 8 x 40 MiB never passed through the server: its memory grew by less than one file.
    assert grew[0] < 40 * MIB, grew


async def test_hard_links_to_one_file_are_never_read_past_the_quota(
    tight_platform: Platform,
) -> None:
    async with owner_shell(tight_platform) as (owner, workspace, term):
        async with memory_growth(tight_platform.process.pid) as grew:
            # 1 MiB of disk that scans as 300 MiB of files (the quota is 3 MiB).
            await term.run("head -c 1048576 /dev/urandom > big; "
                           "for i in $(seq 300); do ln big h$i; done; echo linked")  # fmt: skip
            skipped = await anyio.to_thread.run_sync(
                lambda: status_of(owner, workspace)["sync_skipped"]
            )
    over = [s for s in skipped if s["reason"] == "workspace quota exceeded"]
    assert len(over) >= 290, skipped[:5]
    # Read at most the quota and one batch of 32 files, not 300 MiB.
    assert grew[0] < 100 * MIB, grew


async def test_the_quota_counts_everything_stored_even_what_a_symlink_hides(
    tight_platform: Platform,
) -> None:
    async with owner_shell(tight_platform) as (owner, workspace, term):
        for r in range(4):
            # Fill a directory (two files under the per-file limit), let it be stored, then
            # swap it for a symlink: the scan no longer sees what the database holds there.
            await term.run(
                f"mkdir d{r} && head -c 900K /dev/urandom > d{r}/a && "
                f"head -c 900K /dev/urandom > d{r}/b"
            )
            stored = listing(owner, workspace)
            assert sum(stored.values()) <= QUOTA, stored
            await term.run(f"mv d{r} hidden{r} && ln -s hidden{r} d{r}")
            stored = listing(owner, workspace)
            assert sum(stored.values()) <= QUOTA, stored
        skipped = status_of(owner, workspace)["sync_skipped"]
        assert any(s["reason"] == "workspace quota exceeded" for s in skipped), skipped
        put = owner.client.put(
            f"/api/workspace/{workspace}/files/more.txt", json={"content": "x" * (900 * 1024)}
        )
        assert put.status_code == 413, put.text
        assert sum(listing(owner, workspace).values()) <= QUOTA


async def test_the_quota_counts_the_copy_a_conflict_keeps(tight_platform: Platform) -> None:
    async with owner_shell(tight_platform) as (owner, workspace, term):
        await term.run(
            "head -c 900K /dev/urandom > a.bin && head -c 900K /dev/urandom > b.bin && "
            ": > big.txt && head -c 1536K /dev/zero > room.bin && "  # over the file limit
            "head -c 64M /dev/zero > filler 2>/dev/null; dd if=/dev/zero of=filler.tail bs=512 "
            "2>/dev/null; true"
        )
        assert sum(listing(owner, workspace).values()) < 2 * MIB
        # The sandbox's disk is full: this save is stored, not pushed into the environment.
        put = owner.client.put(
            f"/api/workspace/{workspace}/files/big.txt", json={"content": "x" * (900 * 1024)}
        )
        assert put.status_code == 200, put.text
        # The shell writes the same file: both sides changed it, and the sync keeps the
        # database's version beside the shell's, which must fit the quota too.
        await term.run("rm room.bin && head -c 800K /dev/urandom > big.txt")
        stored = listing(owner, workspace)
        assert sum(stored.values()) <= QUOTA, stored
        skipped = status_of(owner, workspace)["sync_skipped"]
        assert {"path": "big.txt", "reason": "workspace quota exceeded"} in skipped, skipped
        assert await term.run("wc -c < big.txt") == str(800 * 1024)  # the shell's version stays


# -- a failed push or sync is retried; a failed final sync keeps the environment ------------


async def test_an_api_write_to_a_full_sandbox_disk_reaches_the_shell_once_space_is_freed(
    tight_platform: Platform,
) -> None:
    async with owner_shell(tight_platform) as (owner, workspace, term):
        full = await term.run(
            "head -c 64M /dev/zero > filler 2>/dev/null; dd if=/dev/zero of=filler.tail bs=512 "
            "2>/dev/null; df --output=avail -B1 . | tail -1"
        )
        assert full.strip() == "0", full

        put = owner.client.put(
            f"/api/workspace/{workspace}/files/note.txt", json={"content": "from the api\n"}
        )
        assert put.status_code == 200, put.text  # PostgreSQL has it: the write is not lost
        assert await term.run("cat note.txt 2>&1 || true") == (
            "cat: note.txt: No such file or directory"
        )
        # Space comes back later and quietly (no output that would make the terminal sync),
        # and no API call follows: only the retry can bring the file.
        await term.send(
            "sleep 3; rm -f filler; until grep -qs api note.txt; do sleep 0.1; done; "
            "echo ARR''IVED\n"
        )
        await term.until("ARRIVED\r\n", within=30)
    assert text_of(owner, workspace, "note.txt").json()["data"]["content"] == "from the api\n"


def signal_slot(platform: Platform, workspace: str, sig: signal.Signals) -> None:
    """Send ``sig`` to every process of the workspace's sandbox (its agent among them)."""
    slot = session_slot(platform.data_dir, workspace)
    assert slot is not None
    pids = slot_pids(sandbox_slots(platform.data_dir)[slot])
    assert pids, slot
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


async def test_a_failed_final_sync_keeps_the_environment_until_one_succeeds(
    tight_platform: Platform,
) -> None:
    async with owner_shell(tight_platform) as (owner, workspace, term):
        await term.run("echo precious > only-in-the-shell.txt")
    slot = session_slot(tight_platform.data_dir, workspace)
    signal_slot(tight_platform, workspace, signal.SIGSTOP)  # the agent stops answering
    try:
        shutdown = owner.client.post(f"/workspace/{workspace}/shutdown")
        assert shutdown.status_code == 200, shutdown.text
        data = shutdown.json()["data"]
        assert data["container_cleaned"] is False, data
        assert "kept" in data["message"], data
        assert session_slot(tight_platform.data_dir, workspace) == slot  # still there
        status = status_of(owner, workspace)
        assert status["execution"]["state"] == "running", status
        assert status["sync_error"], status
    finally:
        signal_slot(tight_platform, workspace, signal.SIGCONT)

    shutdown = owner.client.post(f"/workspace/{workspace}/shutdown")
    assert shutdown.status_code == 200, shutdown.text
    assert shutdown.json()["data"]["container_cleaned"] is True, shutdown.text
    assert session_slot(tight_platform.data_dir, workspace) is None
    assert not (tight_platform.data_dir / "sandboxes" / "slots" / str(slot)).exists()
    saved = text_of(owner, workspace, "only-in-the-shell.txt")
    assert saved.json()["data"]["content"] == "precious\n", saved.text
    assert status_of(owner, workspace)["sync_error"] is None


# -- a killed gateway loses no acknowledged write ----------------------------------------------


def write_until_refused(user: User, workspace: str, k: int, acked: dict[int, int]) -> None:
    """Save w<k>.txt as "<k>:<n>" for n = 1, 2, ... until the gateway stops answering."""
    n = 0
    while True:
        n += 1
        try:
            put = user.client.put(
                f"/api/workspace/{workspace}/files/w{k}.txt",
                json={"content": f"{k}:{n}\n"},
                timeout=10,
            )
        except httpx.TransportError:
            return
        assert put.status_code == 200, put.text
        acked[k] = n


async def stored_rows(database_url: str, workspace: str) -> dict[str, bytes]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT path, content FROM workspace_files WHERE session_id = $1 AND type = 'file'",
            uuid.UUID(workspace),
        )
    finally:
        await conn.close()
    return {row["path"]: bytes(row["content"]) for row in rows}


async def test_every_acknowledged_write_survives_a_kill_9_of_the_gateway(
    database_url: str,
) -> None:
    first = start_platform(database_url)
    second = None
    try:
        owner = user_of(first)
        workspace = new_workspace(owner)
        async with open_terminal(first, owner, workspace) as ws:
            await Terminal(ws).ready()  # the environment runs: every write goes into it
        writers = 4
        acked: dict[int, int] = {}
        threads = [
            threading.Thread(target=write_until_refused, args=(owner, workspace, k, acked))
            for k in range(writers)
        ]
        for thread in threads:
            thread.start()
        await eventually(
            lambda: len(acked) == writers and min(acked.values()) >= 5,
            "five acknowledged saves from every writer",
            60,
        )
        first.kill()
        for thread in threads:
            await anyio.to_thread.run_sync(thread.join, 30)

        rows = await stored_rows(database_url, workspace)  # before anything syncs again
        second = start_platform(database_url, {"DATA_DIR": str(first.data_dir)})
        owner.client.base_url = httpx.URL(second.base_url)
        async with open_terminal(second, owner, workspace) as ws:
            term = Terminal(ws)
            await term.until("$ ")
            in_shell = await term.run("cat w*.txt")
        in_environment = dict(line.split(":") for line in in_shell.split("\n"))
        for k, n in acked.items():
            # The last acknowledged write, or the one in flight when the gateway died.
            assert rows[f"w{k}.txt"].decode() in (f"{k}:{n}\n", f"{k}:{n + 1}\n"), (k, n, rows)
            assert in_environment[str(k)] in (str(n), str(n + 1)), (k, n, in_shell)
            # The first sync brings both sides to the same version.
            read = text_of(owner, workspace, f"w{k}.txt").json()["data"]["content"]
            assert read == f"{k}:{in_environment[str(k)]}\n"
    finally:
        first.stop(keep_environments=second is not None)  # the second one ends them
        if second is not None:
            second.stop()
            shutil.rmtree(second.workdir, ignore_errors=True)
        shutil.rmtree(first.workdir, ignore_errors=True)


# -- a database outage: the shell's work is stored by the retry, terminals are told why -------


async def stored_content(database_url: str, workspace: str, path: str) -> bytes | None:
    """The file as the database holds it (read directly: an API read would sync first)."""
    try:
        conn = await asyncpg.connect(database_url, timeout=2)
    except (OSError, asyncpg.PostgresError):
        return None
    try:
        return await conn.fetchval(
            "SELECT content FROM workspace_files WHERE session_id = $1 AND path = $2",
            uuid.UUID(workspace),
            path,
        )
    finally:
        await conn.close()


async def test_a_shell_write_during_a_database_outage_is_stored_soon_after_recovery() -> None:
    retry = {**FAULT_ENV, "SYNC_RETRY_MAX_SECONDS": "2", "SYNC_INTERVAL_SECONDS": "3600"}
    with own_postgres() as server:
        with running_platform(server.url, retry) as platform:
            async with owner_shell(platform) as (owner, workspace, term):
                await anyio.to_thread.run_sync(server.stop)
                await term.run("echo written-during-the-outage > outage.txt")

                async with open_terminal(platform, owner, workspace) as refused:
                    late = Terminal(refused)
                    assert await late.closed() == 1013
                    assert "database is unavailable" in late.close_reason
                # Logged too (the log line may land just after the close reached us).
                refusal = f"terminal for {workspace} refused: the database is unavailable"
                await eventually(lambda: refusal in platform.log(), "the refusal logged", 10)
                # The syncs after the output fail and are retried.
                await eventually(
                    lambda: platform.log().count(f"sync of {workspace} failed") >= 2,
                    "two failed syncs logged",
                    30,
                )

                await anyio.to_thread.run_sync(server.start)

                # No API call and no timer (SYNC_INTERVAL_SECONDS is an hour): the retry.
                async def stored() -> bool:
                    return await stored_content(server.url, workspace, "outage.txt") is not None

                await eventually(stored, "outage.txt stored", 15)
            assert await stored_content(server.url, workspace, "outage.txt") == (
                b"written-during-the-outage\n"
            )
