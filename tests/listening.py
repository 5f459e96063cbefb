"""Which TCP ports a process tree listens on, read from /proc (no psutil, no `ss` parsing).

Used to prove that a simulation opens nothing beyond loopback: every listening socket of the
test process and of its descendants (Ray's GCS, raylet, runtime-env agent, workers) is found
through the socket inodes in /proc/PID/fd and the LISTEN rows of /proc/net/tcp and tcp6.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from common.ops.supervise import descendants

LISTEN = "0A"


@dataclass(frozen=True)
class Listener:
    pid: int
    name: str
    address: str
    port: int

    @property
    def loopback(self) -> bool:
        ip = ipaddress.ip_address(self.address)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return ip.is_loopback


def _decode(hex_addr: str) -> tuple[str, int]:
    addr, port = hex_addr.split(":")
    raw = bytes.fromhex(addr)
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw[::-1])), int(port, 16)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))  # 4 little-endian words
    return str(ipaddress.IPv6Address(words)), int(port, 16)


def _listening_inodes(pid: int) -> dict[int, tuple[str, int]]:
    found: dict[int, tuple[str, int]] = {}
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == LISTEN:
                found[int(fields[9])] = _decode(fields[1])
    return found


def _socket_inodes(pid: int) -> set[int]:
    inodes: set[int] = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def _name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return "?"


def tree_listeners(root: int | None = None) -> list[Listener]:
    """Every listening TCP socket held by `root` (default: this process) or a descendant."""
    root = os.getpid() if root is None else root
    pids = [root, *(pid for pid, _ in descendants(root))]
    table = _listening_inodes(root)
    out: list[Listener] = []
    for pid in pids:
        for inode in _socket_inodes(pid):
            if inode in table:
                address, port = table[inode]
                out.append(Listener(pid, _name(pid), address, port))
    return out


def tree_cmdlines(root: int | None = None) -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) for every descendant of `root`."""
    from common.ops.supervise import proc_stat

    root = os.getpid() if root is None else root
    out: dict[int, tuple[int, str]] = {}
    for pid, _ in descendants(root):
        stat = proc_stat(pid)
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if stat is not None:
            out[pid] = (stat[0], cmd)
    return out
