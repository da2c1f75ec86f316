"""The fake cluster's pod network: a network namespace per pod, joined to the host by a veth
pair on a /30 of its own, like a CNI plugin would.

Each fake API server leases one /24 of ``10.244.0.0/16`` (an flock on a file under
``/run/cep-fake-k8s``, so parallel test processes never share a block and a crashed one's
block is free again) and routes the whole /24 as ``unreachable``: a deleted pod's address
fails at once (EHOSTUNREACH) instead of leaking SYNs out of the default route. A pod gets
``10.244.<block>.<4i+2>`` on its ``eth0`` (the host end is ``.4i+1``) and a loopback; it has
no default route, so the only host it can reach is the host end of its own veth.

Needs root and iproute2 (``ip netns``); everything here blocks, the store calls it from a
worker thread.
"""

from __future__ import annotations

import fcntl
import os
import random
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

LEASE_DIR = Path("/run/cep-fake-k8s")
PREFIX = "10.244"
SLOTS = 64  # /30s in a /24


def _ip(*args: str, stdin: str | None = None, check: bool = True) -> None:
    result = subprocess.run(
        ["ip", *args], input=stdin, capture_output=True, text=True, timeout=30
    )  # fmt: skip
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


@dataclass(frozen=True)
class PodNetwork:
    netns: str
    host_interface: str
    ip: str
    slot: int

    @property
    def netns_path(self) -> str:
        return f"/run/netns/{self.netns}"


class NetworkBlock:
    """One /24 for the pods of one fake API server."""

    def __init__(self) -> None:
        if os.geteuid() != 0:
            raise RuntimeError("the fake cluster's pod network needs root (ip netns)")
        LEASE_DIR.mkdir(parents=True, exist_ok=True)
        self._lease_fd, self.block = self._lease()
        self._free = list(range(SLOTS))
        self._lock = threading.Lock()
        self._live: dict[int, PodNetwork] = {}
        self._purge()
        _ip("route", "replace", "unreachable", f"{PREFIX}.{self.block}.0/24")

    @staticmethod
    def _lease() -> tuple[int, int]:
        start = random.randrange(256)
        for offset in range(256):
            block = (start + offset) % 256
            fd = os.open(LEASE_DIR / f"block-{block}", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            return fd, block
        raise RuntimeError("no free /24 for a fake cluster's pods")

    def _purge(self) -> None:
        """Namespaces a crashed holder of this block left behind."""
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
        for line in listed.stdout.splitlines():
            name = line.split()[0] if line.split() else ""
            if name.startswith(f"cepk-{self.block}-"):
                _ip("netns", "del", name, check=False)

    def allocate(self) -> PodNetwork:
        with self._lock:
            if not self._free:
                raise RuntimeError("the fake cluster has no pod addresses left")
            slot = self._free.pop(0)  # round robin: a freed address is reused last
        base = f"{PREFIX}.{self.block}"
        network = PodNetwork(f"cepk-{self.block}-{slot}", f"ck{self.block}h{slot}",
                             f"{base}.{4 * slot + 2}", slot)  # fmt: skip
        host = (
            f"netns add {network.netns}\n"
            f"link add {network.host_interface} type veth peer name eth0 netns {network.netns}\n"
            f"addr add {base}.{4 * slot + 1}/30 dev {network.host_interface}\n"
            f"link set {network.host_interface} up\n"
        )
        inside = f"addr add {network.ip}/30 dev eth0\nlink set eth0 up\nlink set lo up\n"
        try:
            _ip("-batch", "-", stdin=host)
            _ip("-n", network.netns, "-batch", "-", stdin=inside)
        except BaseException:
            self.release(network)
            raise
        with self._lock:
            self._live[slot] = network
        return network

    def release(self, network: PodNetwork) -> None:
        """Delete the namespace (its end of the veth goes with it, and so the host's)."""
        _ip("netns", "del", network.netns, check=False)
        _ip("link", "del", network.host_interface, check=False)
        with self._lock:
            self._live.pop(network.slot, None)
            if network.slot not in self._free:
                self._free.append(network.slot)

    def close(self) -> None:
        for network in list(self._live.values()):
            self.release(network)
        _ip("route", "del", "unreachable", f"{PREFIX}.{self.block}.0/24", check=False)
        os.close(self._lease_fd)
