"""What sandbox containment costs, and the workspace-quota candidates it was chosen from.

    sudo .venv/bin/python -m bench.sandbox_limits [--runs 20] [--size-mb 1024] [--no-cpu]

Needs root (cgroups, loop devices, mounts). Everything lives under ``.data/bench-limits`` and
a cgroup parent ``cep-bench-<random>``, all removed at the end, Ctrl-C included. Prints the
median and p90 in ms of ``--runs`` repetitions and writes bench/results/sandbox_limits-*.json.

1. Workspace quota candidates, each create -> mount -> unmount -> remove, and whether a
   write past the quota fails, and with which error:
   ``ext4-loop-prealloc`` (the chosen one: ``WorkspaceVolume``), ``ext4-loop-sparse`` (the
   same without reserving the blocks), ``tmpfs`` (size-capped, charged to memory), and
   ``project-quota`` (a directory with its own project id on one shared ext4 filesystem
   mounted with ``prjquota``; the shared filesystem's own setup is not counted).
2. What a new sandbox pays before its first prompt: uid lease, cgroup create, volume create,
   and joining the cgroup (the ``/bin/sh`` prefix, against spawning without it); and what
   destroying a slot costs.
3. CPU: the wake-up latency of a server-like loop (sleep 5 ms, work 0.5 ms) while 10
   processes burn CPU, first as plain processes, then each in a sandbox cgroup under the
   low-weight parent.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import fcntl
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from bench.stats import percentile
from shared.execution import sandbox_limits_volume as vol
from shared.execution.sandbox_limits import (
    CgroupSet,
    SandboxContainment,
    SandboxLimits,
    WorkspaceVolume,
)

ROOT = Path(__file__).resolve().parent.parent
MIB = 2**20
WORK = ROOT / ".data" / "bench-limits"
libc = ctypes.CDLL(None, use_errno=True)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered), 2),
        "p90_ms": round(percentile(ordered, 0.9), 2),
    }


def write_past(path: Path, size_mb: int) -> str:
    """Write size+8 MiB into ``path``; the error the writer gets (or 'none')."""
    chunk = b"\0" * MIB
    try:
        with open(path / "fill", "wb") as f:
            for _ in range(size_mb + 8):
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, str(exc))
    finally:
        (path / "fill").unlink(missing_ok=True)
    return "none"


def mount(source: str, target: Path, fstype: str, flags: int, data: str | None) -> None:
    arg = data.encode() if data else None
    if libc.mount(source.encode(), str(target).encode(), fstype.encode(), flags, arg) != 0:
        raise OSError(ctypes.get_errno(), f"mount {target}")


def umount(target: Path) -> None:
    if libc.umount2(str(target).encode(), 0) != 0:
        raise OSError(ctypes.get_errno(), f"umount {target}")


# -- the candidates --------------------------------------------------------------------------


def ext4_loop(directory: Path, size_mb: int, preallocate: bool) -> tuple[float, float]:
    image, mountpoint = directory / "workspace.img", directory / "workspace"
    start = time.perf_counter()
    if preallocate:
        volume = WorkspaceVolume.create(directory, size_mb, 1000)
    else:
        with open(image, "wb") as f:
            f.truncate(size_mb * MIB)
        subprocess.run(["mkfs.ext4", *vol.MKFS_ARGS, "-E", vol.MKFS_EXTENDED, str(image)],
                       check=True, capture_output=True)  # fmt: skip
        mountpoint.mkdir()
        volume = WorkspaceVolume("ext4", mountpoint, image, size_mb)
        volume.mount()
        (mountpoint / "lost+found").rmdir()
    created = (time.perf_counter() - start) * 1000
    return created, timed(volume.destroy)


def tmpfs_create(mountpoint: Path, size_mb: int) -> None:
    mountpoint.mkdir()
    mount("tmpfs", mountpoint, "tmpfs", vol.MS_NOSUID | vol.MS_NODEV, f"size={size_mb}m")


def tmpfs_destroy(mountpoint: Path) -> None:
    umount(mountpoint)
    mountpoint.rmdir()


def tmpfs(directory: Path, size_mb: int) -> tuple[float, float]:
    mountpoint = directory / "workspace"
    return timed(lambda: tmpfs_create(mountpoint, size_mb)), timed(
        lambda: tmpfs_destroy(mountpoint)
    )


FS_IOC_FSGETXATTR, FS_IOC_FSSETXATTR = 0x801C581F, 0x401C5820
FS_XFLAG_PROJINHERIT = 0x200
Q_SETQUOTA, PRJQUOTA, QIF_LIMITS = 0x800008, 2, 1 | 4
DQBLK = struct.Struct("=QQQQQQQQI")  # struct if_dqblk


def set_project_quota(device: str, project: int, size_mb: int) -> None:
    limits = DQBLK.pack(size_mb * 1024, size_mb * 1024, 0, 0, 0, 0, 0, 0, QIF_LIMITS)
    buffer = ctypes.create_string_buffer(limits, DQBLK.size)
    cmd = ctypes.c_int32((Q_SETQUOTA << 8) | PRJQUOTA).value  # QCMD(Q_SETQUOTA, PRJQUOTA)
    if libc.quotactl(cmd, device.encode(), project, buffer) != 0:
        raise OSError(ctypes.get_errno(), "quotactl")


class ProjectQuotaFs:
    """One shared ext4 with project quotas (set up once, not counted per slot)."""

    def __init__(self, directory: Path, size_mb: int) -> None:
        self.image, self.mountpoint = directory / "shared.img", directory / "shared"
        with open(self.image, "wb") as f:
            f.truncate(size_mb * MIB)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-O", "quota,project", "-E",
                        "quotatype=prjquota," + vol.MKFS_EXTENDED, str(self.image)],
                       check=True, capture_output=True)  # fmt: skip
        self.mountpoint.mkdir()
        self.device, fd = vol._attach_loop(self.image)
        try:
            mount(self.device, self.mountpoint, "ext4", 0, "prjquota")
        finally:
            os.close(fd)
        self.next_project = 1000

    def slot(self, size_mb: int) -> tuple[float, float, Path]:
        self.next_project += 1
        project, path = self.next_project, self.mountpoint / f"p{self.next_project}"

        def create() -> None:
            path.mkdir()
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
            try:
                attr = bytearray(fcntl.ioctl(fd, FS_IOC_FSGETXATTR, bytes(28)))
                xflags, extsize, nextents, _, cow = struct.unpack_from("=IIIII", attr)
                struct.pack_into("=IIIII", attr, 0, xflags | FS_XFLAG_PROJINHERIT, extsize,
                                 nextents, project, cow)  # fmt: skip
                fcntl.ioctl(fd, FS_IOC_FSSETXATTR, bytes(attr))
            finally:
                os.close(fd)
            set_project_quota(self.device, project, size_mb)

        def destroy() -> None:
            shutil.rmtree(path)
            set_project_quota(self.device, project, 0)

        created = timed(create)
        return created, timed(destroy), path

    def close(self) -> None:
        umount(self.mountpoint)
        self.image.unlink()


def bench_volumes(runs: int, size_mb: int) -> dict[str, dict[str, object]]:
    results: dict[str, dict[str, object]] = {}
    names = ["ext4-loop-prealloc", "ext4-loop-sparse", "tmpfs", "project-quota"]
    try:
        shared: ProjectQuotaFs | None = ProjectQuotaFs(WORK, 4 * size_mb)
    except OSError as exc:  # e.g. a kernel without CONFIG_QFMT_V2
        shared = None
        names.remove("project-quota")
        results["project-quota"] = {"unavailable": f"ext4 prjquota mount refused: {exc}"}
        print(f"project-quota        unavailable here ({exc}; see dmesg)")
    try:
        for name in names:
            creates, destroys = [], []
            for i in range(runs + 1):
                directory = WORK / f"{name}-{i}"
                directory.mkdir()
                if name == "tmpfs":
                    c, d = tmpfs(directory, size_mb)
                elif name == "project-quota":
                    assert shared is not None
                    c, d, _ = shared.slot(size_mb)
                else:
                    c, d = ext4_loop(directory, size_mb, name.endswith("prealloc"))
                shutil.rmtree(directory)
                if i:  # the first run warms caches up
                    creates.append(c)
                    destroys.append(d)
            results[name] = {
                "create": summary(creates),
                "destroy": summary(destroys),
                "cycle": summary([c + d for c, d in zip(creates, destroys, strict=True)]),
                "past_quota": enforcement(name, shared, size_mb),
            }
            done = results[name]
            print(f"{name:20} create {done['create']}  destroy {done['destroy']}  "
                  f"past quota: {done['past_quota']}")  # fmt: skip
    finally:
        if shared is not None:
            shared.close()
    return results


def enforcement(name: str, shared: ProjectQuotaFs | None, size_mb: int) -> str:
    small = 64
    directory = WORK / f"{name}-enforce"
    directory.mkdir()
    try:
        if shared is not None and name == "project-quota":
            _, _, path = shared.slot(small)
            return write_past(path, small)
        if name == "tmpfs":
            tmpfs_create(directory / "workspace", small)
            try:
                return write_past(directory / "workspace", small)
            finally:
                tmpfs_destroy(directory / "workspace")
        volume = WorkspaceVolume.create(directory, small, None)
        try:
            return write_past(volume.mountpoint, small)
        finally:
            volume.destroy()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# -- a new sandbox's first prompt -----------------------------------------------------------


def bench_slot(runs: int, limits: SandboxLimits) -> dict[str, object]:
    containment = SandboxContainment(limits)
    assert containment.cgroups.mode, containment.cgroups.reason
    keys = ("uid", "cgroup", "volume", "slot_total", "join_exec", "plain_exec", "destroy")
    parts: dict[str, list[float]] = {key: [] for key in keys}
    for i in range(runs + 1):
        slot_dir = WORK / f"slot-{i}"
        slot_dir.mkdir(mode=0o711)
        sample = slot_sample(containment, slot_dir, limits.workspace_mb)
        shutil.rmtree(slot_dir)
        if i:  # the first run warms caches up
            for key in keys:
                parts[key].append(sample[key])
    containment.cgroups.remove_parent()
    results = {key: summary(values) for key, values in parts.items()}
    for key, value in results.items():
        print(f"{key:12} {value}")
    return results


def slot_sample(containment: SandboxContainment, slot_dir: Path, size_mb: int) -> dict[str, float]:
    """One new slot: each part alone, then all of it through ``create_slot``."""
    sample: dict[str, float] = {}
    start = time.perf_counter()
    lease = containment.uids.allocate(slot_dir)
    sample["uid"] = (time.perf_counter() - start) * 1000
    assert lease is not None
    lease.release()
    start = time.perf_counter()
    group = CgroupSet.create(containment.cgroups, f"alone-{slot_dir.name}", 256 * MIB, 256)
    sample["cgroup"] = (time.perf_counter() - start) * 1000
    group.destroy()
    sample["volume"], _ = ext4_loop(slot_dir, size_mb, preallocate=True)
    start = time.perf_counter()
    slot = containment.create_slot(slot_dir)
    sample["slot_total"] = (time.perf_counter() - start) * 1000
    sample["join_exec"] = timed(lambda: subprocess.run([*slot.join_argv(), "/bin/true"]))
    sample["plain_exec"] = timed(lambda: subprocess.run(["/bin/true"]))
    sample["destroy"] = timed(slot.destroy)
    return sample


# -- CPU -------------------------------------------------------------------------------------


def wake_latency(seconds: float) -> dict[str, float]:
    """Oversleep of a loop sleeping 5 ms then working 0.5 ms: what a request waits for CPU."""
    late: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        before = time.perf_counter()
        time.sleep(0.005)
        late.append((time.perf_counter() - before - 0.005) * 1000)
        spin = time.perf_counter() + 0.0005
        while time.perf_counter() < spin:
            pass
    late.sort()
    return {
        "p50_ms": round(late[len(late) // 2], 2),
        "p99_ms": round(late[int(len(late) * 0.99)], 2),
    }


def bench_cpu(limits: SandboxLimits, burners: int, seconds: float) -> dict[str, object]:
    containment = SandboxContainment(limits)
    results: dict[str, object] = {"idle": wake_latency(seconds)}
    for contained in (False, True):
        groups = [CgroupSet.create(containment.cgroups, f"burn-{n}", 256 * MIB, 16)
                  for n in range(burners)] if contained else []  # fmt: skip
        prefixes = [group.join_argv() for group in groups] or [[]] * burners
        procs = [subprocess.Popen([*prefix, "/bin/sh", "-c", "while :; do :; done"])
                 for prefix in prefixes]  # fmt: skip
        try:
            key = "burners_in_sandbox_cgroups" if contained else "burners_uncontained"
            results[key] = wake_latency(seconds)
        finally:
            for proc in procs:
                proc.kill()
                proc.wait()
            for group in groups:
                group.destroy()
    containment.cgroups.remove_parent()
    for key, value in results.items():
        print(f"{key:28} {value}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--no-cpu", action="store_true")
    parser.add_argument("--cpu-seconds", type=float, default=5.0)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root: cgroups, loop devices and mounts")
    WORK.mkdir(parents=True, exist_ok=True)
    os.chmod(WORK, 0o711)
    limits = SandboxLimits(
        workspace_mb=args.size_mb, disk_min_free_mb=0,
        cgroup_parent=f"cep-bench-{uuid.uuid4().hex[:6]}", uid_lease_dir=WORK / "uids",
    )  # fmt: skip
    report: dict[str, object] = {"runs": args.runs, "size_mb": args.size_mb}
    try:
        print(f"== workspace quota candidates ({args.size_mb} MiB, median of {args.runs})")
        report["volumes"] = bench_volumes(args.runs, args.size_mb)
        print(f"== a new sandbox (median of {args.runs})")
        report["slot"] = bench_slot(args.runs, limits)
        if not args.no_cpu:
            print(f"== server wake-up latency with 10 CPU burners ({args.cpu_seconds} s each)")
            report["cpu"] = bench_cpu(limits, 10, args.cpu_seconds)
    finally:
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            if str(WORK) in line.split()[4]:
                libc.umount2(line.split()[4].encode(), vol.MNT_DETACH)
        shutil.rmtree(WORK, ignore_errors=True)
    out = ROOT / "bench" / "results" / f"sandbox_limits-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"results: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
