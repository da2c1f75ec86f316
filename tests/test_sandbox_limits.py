"""Host-side containment of local sandboxes, against the real kernel and real bubblewrap.

Each sandbox here is a real bwrap process joined to its cgroup and running as its leased host
uid, exactly as the backend starts it; what is asserted is what a user in the sandbox or on
the host observes (ENOSPC, EROFS, a process count, host shared memory). Every test runs only
where its kernel feature exists; everything it creates is destroyed even on failure, and the
``slots`` fixture then asserts nothing is left: no cgroup, mount, loop device or uid lease.
"""

from __future__ import annotations

import json
import logging
import os
import select
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.config import Settings
from shared.execution.local_sandbox import system_binds
from shared.execution.sandbox_limits import (
    CgroupError,
    CgroupHost,
    CgroupSet,
    SandboxContainment,
    SandboxLimits,
    SlotLimits,
    UidPool,
    VolumeError,
    WorkspaceVolume,
    bwrap_tmpfs_args,
)
from shared.execution.sandbox_limits_detect import detect, probe
from shared.execution.sandbox_limits_uid import UidError, UidLease, process_uids
from shared.execution.sandbox_limits_volume import loop_support, mounted
from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parent.parent
MIB = 2**20
IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="cgroups, loop mounts and host uids need root")


def _skip_unless(condition: bool, reason: str) -> None:
    if not condition:
        pytest.skip(reason)


# -- a real sandbox ------------------------------------------------------------------------


class Sandbox:
    """A bwrap sandbox running ``script`` in a slot; its output is read with a deadline."""

    def __init__(
        self,
        slot: SlotLimits,
        script: str,
        tmpfs: list[str] | None = None,
        detached: bool = False,
        shell: str = "/bin/sh",
    ) -> None:
        fd = os.open(slot.volume.mountpoint, os.O_PATH | os.O_DIRECTORY)
        argv = ["bwrap", *system_binds()]
        argv += ["--proc", "/proc", "--dev", "/dev", "--bind-fd", str(fd), "/workspace",
                 *(tmpfs or []), "--unshare-all", "--unshare-user", "--disable-userns",
                 "--uid", "1000", "--gid", "1000", "--new-session", "--chdir", "/workspace",
                 "--clearenv", "--setenv", "PATH", "/usr/bin:/bin"]  # fmt: skip
        if not detached:
            argv.append("--die-with-parent")
        uid = slot.host_uid
        drop = [] if uid is None else ["setpriv", f"--reuid={uid}", f"--regid={uid}",
                                       "--clear-groups", "--"]  # fmt: skip
        try:
            self.proc = subprocess.Popen(
                [*slot.join_argv(), *drop, *argv, "--", shell, "-c", script],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                pass_fds=(fd,), start_new_session=True,
            )  # fmt: skip
        finally:
            os.close(fd)
        self.output = b""

    def until(self, text: str, timeout: float = 30.0) -> str:
        """Output up to ``text``; fails if the sandbox ends or the deadline passes first."""
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while text.encode() not in self.output:
            left = deadline - time.monotonic()
            assert left > 0, f"no {text!r} within {timeout}s: {self.output[-2000:]!r}"
            ready, _, _ = select.select([self.proc.stdout], [], [], min(left, 0.2))
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                assert chunk, f"sandbox ended before {text!r}: {self.output[-2000:]!r}"
                self.output += chunk
        return self.output.decode(errors="replace")

    def finish(self, timeout: float = 30.0) -> str:
        """All output until the sandbox exits."""
        assert self.proc.stdout is not None
        out, _ = self.proc.communicate(timeout=timeout)
        self.output += out
        return self.output.decode(errors="replace")


def run_in(
    slot: SlotLimits, script: str, tmpfs: list[str] | None = None, shell: str = "/bin/sh"
) -> str:
    box = Sandbox(slot, script, tmpfs, shell=shell)
    try:
        return box.finish()
    finally:
        box.proc.kill()
        box.proc.wait()


# -- fixtures: create, destroy, prove nothing is left ----------------------------------------


def leftovers(cgroups: CgroupHost, base: Path, lease_dir: Path) -> list[str]:
    found = []
    for parent in cgroups.parents.values():
        if parent.is_dir():
            found += [f"cgroup {p}" for p in parent.iterdir() if p.is_dir()]
    with open("/proc/self/mountinfo") as f:
        found += [f"mount {line.split()[4]}" for line in f if str(base) in line.split()[4]]
    for loop in Path("/sys/block").glob("loop*"):
        backing = loop / "loop" / "backing_file"
        if backing.exists() and str(base) in backing.read_text():
            found.append(f"loop device {loop.name}: {backing.read_text().strip()}")
    if lease_dir.is_dir():
        found += [f"uid lease {p.name}" for p in lease_dir.iterdir() if p.name.isdigit()]
    return found


class Slots:
    """Makes slots for one test; destroys them all, then checks the host is clean."""

    def __init__(self, base: Path, limits: SandboxLimits) -> None:
        self.base = base
        self.limits = limits
        self.containment = SandboxContainment(limits)
        self.made: list[SlotLimits] = []

    def new(self) -> SlotLimits:
        slot_dir = self.base / f"slot-{uuid.uuid4().hex[:12]}"
        slot_dir.mkdir(mode=0o711)
        slot = self.containment.create_slot(slot_dir)
        self.made.append(slot)
        return slot

    def cleanup(self) -> list[str]:
        """Destroy every slot made; report what was left, then sweep that away too."""
        for slot in reversed(self.made):
            slot.destroy()
            shutil.rmtree(slot.volume.mountpoint.parent, ignore_errors=True)
        cgroups = self.containment.cgroups
        left = leftovers(cgroups, self.base, self.limits.uid_lease_dir)
        if left:  # a failed test must not leave the host dirty either
            names = {p.name for parent in cgroups.parents.values() for p in parent.iterdir()
                     if p.is_dir()}  # fmt: skip
            for name in names:
                paths = {key: parent / name for key, parent in cgroups.parents.items()}
                CgroupSet(cgroups.mode or "v1", paths).destroy()
            for line in Path("/proc/self/mountinfo").read_text().splitlines():
                if str(self.base) in line.split()[4]:
                    subprocess.run(["umount", "-l", line.split()[4]], check=False)
        return left


def _limits(tmp: Path, **overrides: object) -> SandboxLimits:
    values: dict = dict(
        memory_mb=256, max_processes=64, workspace_mb=32, disk_min_free_mb=0, tmp_mb=16,
        shm_mb=16, cgroup_parent=f"cep-test-{uuid.uuid4().hex[:8]}", uid_lease_dir=tmp / "uids",
    )  # fmt: skip
    values.update(overrides)
    return SandboxLimits(**values)


@pytest.fixture
def base() -> Iterator[Path]:
    # Not pytest's tmp_path: every parent of a sandbox's mount must be reachable (o+x).
    path = Path(f"/tmp/cep-limits-{uuid.uuid4().hex[:8]}")
    path.mkdir(mode=0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def slots(base: Path) -> Iterator[Slots]:
    _skip_unless(IS_ROOT, "cgroups, loop mounts and host uids need root")
    _skip_unless(shutil.which("bwrap") is not None, "bubblewrap is not installed")
    made = Slots(base, _limits(base))
    _skip_unless(made.containment.cgroups.mode is not None, made.containment.cgroups.reason)
    try:
        yield made
    finally:
        left = made.cleanup()
        made.containment.cgroups.remove_parent()
        assert left == [], f"left behind: {left}"
        assert not any(p.exists() for p in made.containment.cgroups.parents.values())


def _needs_quota() -> None:
    reason = loop_support()
    _skip_unless(reason is None, f"no loop-mounted volumes here: {reason}")


def _meminfo_kib(key: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise AssertionError(key)


# -- memory ----------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["/dev/shm", "/tmp"])
def test_writing_past_the_memory_limit_into_tmpfs_fails_and_host_memory_stays_bounded(
    slots: Slots, where: str
) -> None:
    slot = slots.new()
    assert slot.cgroup is not None
    slot_memory = slots.limits.memory_mb * MIB
    # Oversized tmpfs on purpose: the cgroup, not the tmpfs size, must be what stops it.
    tmpfs = ["--size", str(4096 * MIB), "--tmpfs", "/dev/shm",
             "--size", str(4096 * MIB), "--tmpfs", "/tmp"]  # fmt: skip
    shmem_before = _meminfo_kib("Shmem") * 1024
    box = Sandbox(slot, f"head -c 1024M /dev/zero > {where}/fill; echo rc=$?; echo DONE; read x",
                  tmpfs)  # fmt: skip
    peak_growth = 0
    deadline = time.monotonic() + 120
    try:
        while b"DONE" not in box.output and box.proc.poll() is None:
            assert time.monotonic() < deadline, box.output
            peak_growth = max(peak_growth, _meminfo_kib("Shmem") * 1024 - shmem_before)
            ready, _, _ = select.select([box.proc.stdout], [], [], 0.02)
            if ready:
                box.output += os.read(box.proc.stdout.fileno(), 4096)  # type: ignore[union-attr]
        peak_growth = max(peak_growth, _meminfo_kib("Shmem") * 1024 - shmem_before)
        usage = slot.cgroup.usage()
    finally:
        box.proc.kill()
        box.proc.wait()
    # Either the writer failed (rc != 0) or the sandbox was OOM-killed: never 1 GiB written.
    assert b"rc=0" not in box.output, box.output
    assert usage.oom_kills > 0 or b"rc=1" in box.output, (box.output, usage)
    assert usage.memory_peak_bytes is None or usage.memory_peak_bytes <= slot_memory
    assert peak_growth < slot_memory + 128 * MIB, f"host shared memory grew {peak_growth >> 20} MiB"


# -- processes -------------------------------------------------------------------------------


def test_a_fork_bomb_is_held_at_the_process_limit_and_a_neighbour_still_starts_processes(
    slots: Slots,
) -> None:
    bombed, neighbour = slots.new(), slots.new()
    assert bombed.cgroup is not None and bombed.host_uid != neighbour.host_uid
    bomb = Sandbox(bombed, "echo LIT; bomb() { bomb | bomb & }; bomb; read x", shell="/bin/bash")
    try:
        bomb.until("LIT")
        wait_until(
            lambda: bombed.cgroup.usage().processes >= slots.limits.max_processes,
            "the bomb at the cgroup's process limit",
            30,
        )
        assert bombed.cgroup.usage().processes <= slots.limits.max_processes
        out = run_in(neighbour, "for i in $(seq 40); do sleep 30 & done; "
                     "echo started $(ls /proc | grep -c '^[0-9]*$'); kill $(jobs -p)",
                     shell="/bin/bash")  # fmt: skip
        assert "fork" not in out and int(out.split("started ")[1].split()[0]) > 40, out
        bombed.cgroup.kill_all()
        assert bombed.cgroup.pids() == set()
    finally:
        bomb.proc.kill()
        bomb.proc.wait()


# -- disk ------------------------------------------------------------------------------------


def test_the_workspace_quota_gives_enospc_in_that_sandbox_only(slots: Slots) -> None:
    _needs_quota()
    full, other = slots.new(), slots.new()
    assert full.volume.kind == "ext4"
    out = run_in(full, "head -c 64M /dev/zero > big; echo rc=$?")
    assert "No space left on device" in out and "rc=1" in out, out
    assert run_in(other, "head -c 8M /dev/zero > ok && echo written") == "written\n"
    assert os.stat(other.volume.mountpoint / "ok").st_uid == other.host_uid
    used, size = full.volume.usage() or (0, 0)
    assert size <= slots.limits.workspace_mb * MIB and used > size - MIB


def test_workspace_files_survive_the_sandbox_and_a_remount(slots: Slots) -> None:
    _needs_quota()
    slot = slots.new()
    box = Sandbox(slot, "echo kept > notes.txt; echo WROTE; sleep 600")
    box.until("WROTE")
    slot.kill_all()  # the sandbox crashes
    box.proc.wait()
    slot.volume.unmount()  # as after a reboot
    assert not mounted(slot.volume.mountpoint)
    slot.volume.mount()
    assert (slot.volume.mountpoint / "notes.txt").read_text() == "kept\n"
    assert sorted(os.listdir(slot.volume.mountpoint)) == ["notes.txt"]  # no lost+found
    with pytest.raises(VolumeError, match="already holds"):
        WorkspaceVolume.create(slot.volume.mountpoint.parent, 16, None)
    assert (slot.volume.mountpoint / "notes.txt").read_text() == "kept\n"


def test_an_image_another_filesystem_still_holds_is_never_mounted_twice(slots: Slots) -> None:
    _needs_quota()
    slot = slots.new()
    (slot.volume.mountpoint / "notes.txt").write_text("kept\n")
    image = slot.volume.image
    assert image is not None
    slot.volume.unmount()
    # What a mount namespace copied by a sandbox being made leaves for a moment: the image
    # still attached (here: a loop device of our own, without a mount).
    held = subprocess.run(["losetup", "--find", "--show", str(image)], capture_output=True,
                          text=True, check=True).stdout.strip()  # fmt: skip
    try:
        with pytest.raises(VolumeError, match="still in use"):
            slot.volume.mount(in_use_wait=0.2)
        assert not mounted(slot.volume.mountpoint)
    finally:
        subprocess.run(["losetup", "-d", held], check=True)
    slot.volume.mount()
    assert (slot.volume.mountpoint / "notes.txt").read_text() == "kept\n"


def test_a_recorded_slot_is_resumed_after_a_reboot(slots: Slots) -> None:
    _needs_quota()
    slot = slots.new()
    assert slot.cgroup is not None and slot.uid is not None
    (slot.volume.mountpoint / "main.py").write_text("print(1)\n")
    os.chown(slot.volume.mountpoint / "main.py", slot.uid.uid, slot.uid.uid)
    recorded = json.loads(json.dumps(slot.to_dict()))
    # What a reboot takes away: mounts, cgroups, and /run with the uid leases.
    slot.volume.unmount()
    slot.cgroup.destroy()
    (slots.limits.uid_lease_dir / str(slot.uid.uid)).unlink()
    resumed = slots.containment.resume(recorded)
    slots.made.append(resumed)
    assert resumed.host_uid == slot.host_uid
    assert slots.containment.uids.leases()[slot.uid.uid] == str(slot.uid.holder)
    assert resumed.cgroup is not None and resumed.cgroup.limits()["pids.max"] == "64"
    assert (resumed.volume.mountpoint / "main.py").read_text() == "print(1)\n"
    assert run_in(resumed, "cat main.py; echo more >> main.py && echo appended") == (
        "print(1)\nappended\n"
    )


def test_a_volume_is_refused_when_the_disk_would_run_short(base: Path) -> None:
    _skip_unless(IS_ROOT, "loop mounts need root")
    _needs_quota()
    with pytest.raises(VolumeError, match="not enough disk"):
        WorkspaceVolume.create(base / "slot", 16, None, min_free_mb=2**40)
    assert not (base / "slot" / "workspace.img").exists()
    assert not mounted(base / "slot" / "workspace")


# -- tmpfs -----------------------------------------------------------------------------------


def test_every_tmpfs_in_the_sandbox_is_bounded(slots: Slots) -> None:
    slot = slots.new()
    limits = SandboxLimits(memory_mb=64, tmp_mb=8, shm_mb=4)
    out = run_in(
        slot,
        "for d in / /dev /tmp /dev/shm; do head -c 16M /dev/zero > $d/f; "
        "echo $d $(($(wc -c < $d/f 2>/dev/null || echo 0) / 1048576)); done; "
        "echo hello > /dev/null && echo devnull-writable",
        bwrap_tmpfs_args(limits),
    )
    assert "/ 0\n" in out and "/dev 0\n" in out, out
    assert out.count("Read-only file system") == 2, out
    assert "/tmp 8\n" in out and "/dev/shm 4\n" in out, out
    assert out.count("No space left on device") == 2, out
    assert "devnull-writable" in out


# -- uids ------------------------------------------------------------------------------------

_ALLOCATE = """
import json, sys
from pathlib import Path
from shared.execution.sandbox_limits_uid import UidPool
pool = UidPool(int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]))
got = []
for i in range(int(sys.argv[4])):
    holder = Path(sys.argv[5]) / f"{sys.argv[6]}-{i}"
    holder.mkdir()
    got.append(pool.allocate(holder).uid)
print(json.dumps(got))
"""


# Below the platform's own range (SANDBOX_HOST_UID_BASE, 0x70000000 and up): a sandbox of a
# platform running meanwhile (another test module) never holds one of these uids.
OUTSIDE_THE_PLATFORMS_UIDS = 0x68000000


@needs_root
def test_sandboxes_never_share_a_host_uid_across_server_processes(base: Path) -> None:
    lease_dir, first, count = base / "uids", OUTSIDE_THE_PLATFORMS_UIDS, 120
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _ALLOCATE,
                str(first),
                str(count),
                str(lease_dir),
                "30",
                str(base),
                f"owner{n}",
            ],
            stdout=subprocess.PIPE,
            cwd=ROOT,
            text=True,
        )  # fmt: skip
        for n in range(4)
    ]
    got = []
    for worker in workers:
        out, _ = worker.communicate(timeout=60)
        assert worker.returncode == 0
        got += json.loads(out)
    assert len(got) == len(set(got)) == count  # 4 processes x 30 from 120 uids: all distinct
    pool = UidPool(first, count, lease_dir)
    with pytest.raises(UidError, match="in use"):
        pool.allocate(base)
    shutil.rmtree(base / "owner2-7")  # that slot is gone: its lease is stale
    reclaimed = pool.allocate(base)
    assert reclaimed is not None and pool.leases()[reclaimed.uid] == str(base)
    for uid, holder in pool.leases().items():
        UidLease(uid, Path(holder), lease_dir).release()
    assert pool.leases() == {}


@needs_root
def test_a_uid_some_process_runs_as_is_never_leased(base: Path) -> None:
    uid = OUTSIDE_THE_PLATFORMS_UIDS + 9000
    squatter = subprocess.Popen(["setpriv", f"--reuid={uid}", f"--regid={uid}",
                                 "--clear-groups", "sleep", "60"])  # fmt: skip
    try:
        wait_until(lambda: uid in process_uids().get(squatter.pid, set()), "the squatter's uid", 10)
        pool = UidPool(uid, 1, base / "uids")
        with pytest.raises(UidError):
            pool.allocate(base)
        adopted = pool.adopt(uid, base)  # a slot found after a restart keeps its uid
        assert adopted is not None and pool.leases() == {uid: str(base)}
        other = base / "other"
        other.mkdir()
        with pytest.raises(UidError, match="leased by"):
            pool.adopt(uid, other)
        adopted.release()
    finally:
        squatter.kill()
        squatter.wait()


# -- cpu -------------------------------------------------------------------------------------


def test_cpu_weights_are_set_as_configured(base: Path) -> None:
    _skip_unless(IS_ROOT, "cgroups need root")
    limits = _limits(base, cpu_weight=300, cpu_limit=0.5, parent_cpu_weight=10)
    containment = SandboxContainment(limits)
    cgroups = containment.cgroups
    _skip_unless(cgroups.mode is not None, cgroups.reason)
    group = CgroupSet.create(cgroups, "weights", 64 * MIB, 32, limits.cpu_weight, limits.cpu_limit)
    try:
        seen = group.limits()
        if cgroups.mode == "v2":
            assert seen["cpu.weight"] == "300" and seen["cpu.max"] == "50000 100000"
            assert (cgroups.parents["unified"] / "cpu.weight").read_text().strip() == "10"
        else:
            assert seen["cpu.shares"] == "3072" and seen["cpu.cfs_quota_us"] == "50000"
            assert (cgroups.parents["cpu"] / "cpu.shares").read_text().strip() == "102"
        assert seen["pids.max"] == "32"
    finally:
        group.destroy()
        cgroups.remove_parent()
    assert leftovers(cgroups, base, limits.uid_lease_dir) == []


# -- ending ----------------------------------------------------------------------------------


def test_destroy_ends_stopped_forking_and_escaped_processes_and_leaves_nothing(
    slots: Slots,
) -> None:
    slot = slots.new()
    assert slot.cgroup is not None and slot.host_uid is not None
    box = Sandbox(
        slot,
        "sleep 600 & kill -STOP $!; (while true; do sleep 0.01 & done) & "
        "setsid sh -c 'sleep 600' & cd /workspace; echo UP; sleep 600",
        detached=True,
    )
    box.until("UP")
    assert len(slot.cgroup.pids()) >= 5
    slot.destroy()
    slot.destroy()  # idempotent
    box.proc.wait(timeout=10)
    survivors = {pid for pid, uids in process_uids().items() if slot.host_uid in uids}
    assert survivors == set(), [Path(f"/proc/{pid}/status").read_text() for pid in survivors]
    assert not mounted(slot.volume.mountpoint) and not slot.volume.mountpoint.exists()
    assert not any(path.exists() for path in slot.cgroup.paths.values())


_CRASHING_SERVER = """
import json, os, signal, subprocess, sys
from pathlib import Path
from shared.execution.sandbox_limits import SandboxContainment, SandboxLimits
limits = SandboxLimits(**json.loads(sys.argv[1]))
slot_dir = Path(sys.argv[2]); slot_dir.mkdir(mode=0o711)
slot = SandboxContainment(limits).create_slot(slot_dir)
(slot_dir / "slot.json").write_text(json.dumps(slot.to_dict()))
fd = os.open(slot.volume.mountpoint, os.O_PATH)
uid = str(slot.host_uid)
subprocess.Popen([*slot.join_argv(), "setpriv", "--reuid", uid, "--regid", uid, "--clear-groups",
    "bwrap", "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib",
    "/lib", "--symlink", "usr/lib64", "/lib64", "--bind-fd", str(fd), "/workspace",
    "--unshare-all", "--unshare-user", "--new-session", "--", "/bin/sh", "-c",
    "echo draft > /workspace/draft.txt; exec sleep 600"], pass_fds=(fd,), start_new_session=True,
    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
while not (slot.volume.mountpoint / "draft.txt").exists():
    pass
os.kill(os.getpid(), signal.SIGKILL)  # the server dies; its sandbox must not
"""

_FRESH_SERVER = """
import json, sys
from pathlib import Path
from shared.execution.sandbox_limits import SlotLimits
slot = SlotLimits.from_dict(json.loads(Path(sys.argv[1]).read_text()))
print((slot.volume.mountpoint / "draft.txt").read_text().strip(), len(slot.cgroup.pids()))
slot.destroy()
"""


def test_a_slot_recorded_as_json_survives_the_server_and_a_fresh_process_destroys_it(
    slots: Slots,
) -> None:
    _needs_quota()
    limits = slots.limits
    settings = {
        "memory_mb": limits.memory_mb, "max_processes": limits.max_processes,
        "workspace_mb": limits.workspace_mb, "disk_min_free_mb": 0, "tmp_mb": limits.tmp_mb,
        "shm_mb": limits.shm_mb, "cgroup_parent": limits.cgroup_parent,
        "uid_lease_dir": str(limits.uid_lease_dir),
    }  # fmt: skip
    slot_dir = slots.base / "crashed-slot"
    crashed = subprocess.run(
        [sys.executable, "-c", _CRASHING_SERVER, json.dumps(settings), str(slot_dir)],
        cwd=ROOT,
        timeout=60,
    )
    assert crashed.returncode == -9
    recorded = slot_dir / "slot.json"
    slot = SlotLimits.from_dict(json.loads(recorded.read_text()))
    slots.made.append(slot)  # destroyed by the fixture if the fresh process fails
    assert mounted(slot.volume.mountpoint) and slot.cgroup and slot.cgroup.pids()
    fresh = subprocess.run(
        [sys.executable, "-c", _FRESH_SERVER, str(recorded)],
        cwd=ROOT,
        timeout=60,
        capture_output=True,
        text=True,
    )
    assert fresh.returncode == 0, fresh.stderr
    draft, processes = fresh.stdout.split()
    assert draft == "draft" and int(processes) >= 1
    assert not mounted(slot.volume.mountpoint)
    assert not any(path.exists() for path in slot.cgroup.paths.values())
    assert slot.uid is not None
    pool = UidPool(limits.host_uid_base, limits.host_uid_count, limits.uid_lease_dir)
    assert slot.uid.uid not in pool.leases()


def test_the_cgroup_join_prefix_refuses_to_run_outside_its_cgroup(slots: Slots) -> None:
    slot = slots.new()
    assert slot.cgroup is not None
    gone = CgroupSet(
        slot.cgroup.mode, {k: p.parent / "missing" for k, p in slot.cgroup.paths.items()}
    )
    ran = subprocess.run([*gone.join_argv(), "echo", "RAN"], capture_output=True, text=True)
    assert ran.returncode == 125 and "RAN" not in ran.stdout
    ran = subprocess.run([*slot.cgroup.join_argv(), "cat", "/proc/self/oom_score_adj"],
                         capture_output=True, text=True)  # fmt: skip
    assert ran.returncode == 0 and ran.stdout.strip() == "500"


def test_recorded_cgroups_must_be_cgroups(base: Path) -> None:
    for bad in ({"mode": "v1", "paths": {"memory": "/etc", "pids": "/tmp", "cpu": "/"}},
                {"mode": "v3", "paths": {}}):  # fmt: skip
        with pytest.raises(CgroupError, match="cgroup"):
            CgroupSet.from_dict(bad)


# -- detection and configuration -----------------------------------------------------------


def test_detection_names_the_mode_or_says_why_not_and_warns_once(
    base: Path, caplog: pytest.LogCaptureFixture
) -> None:
    host = probe("cep-probe-" + uuid.uuid4().hex[:6])
    try:
        if IS_ROOT:
            assert host.mode in ("v1", "v2"), host.reason
            assert all(p.is_dir() for p in host.parents.values())
        else:
            assert host.mode is None and "root" in host.reason
    finally:
        host.remove_parent()
    mountinfo = base / "mountinfo"
    mountinfo.write_text("31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n")
    none = probe("x", mountinfo=mountinfo)
    assert none.mode is None
    assert ("not mounted" if IS_ROOT else "not run as root") in none.reason
    with caplog.at_level(logging.WARNING):
        detect("bad/../parent")
        detect("bad/../parent")
    assert caplog.text.count("NO CGROUP CONTAINMENT") == 1


def test_cgroup_v2_delegation_and_limits_are_written_as_the_kernel_expects(base: Path) -> None:
    _skip_unless(IS_ROOT, "probing cgroups needs root")
    # No v2 controllers can be delegated on this kind of host; a cgroup2-shaped tree checks
    # which files get which values (the kernel-run tests above cover v1).
    fs = base / "cgroup2"
    service = fs / "system.slice" / "cep.service"
    for directory in (fs, fs / "system.slice", service, service / "server", service / "sbx"):
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
        (directory / "cgroup.subtree_control").write_text("")
    mountinfo = base / "mountinfo"
    mountinfo.write_text(f"40 23 0:30 / {fs} rw - cgroup2 cgroup2 rw\n")
    own = base / "cgroup"
    own.write_text("0::/system.slice/cep.service/server\n")
    host = probe("sbx", mountinfo=mountinfo, proc_cgroup=own)
    assert host.mode == "v2" and host.parents == {"unified": service / "sbx"}
    for directory in (service, service / "sbx"):  # next to the server's leaf, not under it
        assert set((directory / "cgroup.subtree_control").read_text().split()) == {
            "+memory", "+pids", "+cpu"}  # fmt: skip
    host.configure_parent(10, 8 * 2**30, 4096)
    assert (service / "sbx" / "cpu.weight").read_text() == "10"
    group = CgroupSet.create(host, "s1", 256 * MIB, 128, 100, 1.5)
    written = {f.name: f.read_text() for f in group.paths["unified"].iterdir()}
    assert written == {"memory.max": str(256 * MIB), "memory.swap.max": "0", "pids.max": "128",
                       "cpu.weight": "100", "cpu.max": "150000 100000"}  # fmt: skip
    assert group.join_argv()[-2:] == [str(group.paths["unified"] / "cgroup.procs"), "--"]


def test_limits_are_read_from_the_environment_with_safe_defaults() -> None:
    def read(env: dict[str, str]) -> SandboxLimits:
        return Settings.from_env(env).execution.sandbox.limits

    limits = read(
        {"SANDBOX_MEMORY_MB": "2048", "SANDBOX_MAX_PROCESSES": "100", "SANDBOX_CPU_WEIGHT": "50",
         "SANDBOX_CPU_LIMIT": "1.5", "SANDBOX_WORKSPACE_MB": "512", "SANDBOX_SHM_MB": "32",
         "SANDBOX_HOST_UID_BASE": "200000", "SANDBOX_HOST_UID_COUNT": "1000",
         "SANDBOX_CGROUP_PARENT": "/cep", "SANDBOX_UID_LEASE_DIR": "/run/x"}
    )  # fmt: skip
    assert (limits.memory_mb, limits.max_processes, limits.cpu_weight, limits.cpu_limit) == (
        2048, 100, 50, 1.5)  # fmt: skip
    assert (limits.workspace_mb, limits.shm_mb, limits.host_uid_base) == (512, 32, 200000)
    assert limits.cgroup_parent == "/cep" and limits.uid_lease_dir == Path("/run/x")
    assert read({}) == SandboxLimits()
    for bad in ({"SANDBOX_MEMORY_MB": "lots"}, {"SANDBOX_CPU_WEIGHT": "0"},
                {"SANDBOX_MEMORY_MB": "256", "SANDBOX_MAX_TMP_MB": "256"}):  # fmt: skip
        with pytest.raises(ValueError, match="SANDBOX_"):
            read(bad)
