"""Two NATed LANs and a "public" host, built from network namespaces (root only).

::

    lanA 192.168.51.2 --- natA (MASQUERADE) 10.77.0.2 --+
                                                        +-- br0 10.77.0.1  pub
    lanB 192.168.52.2 --- natB (MASQUERADE) 10.77.0.3 --+   (coturn, signaling)

* ``pub`` forwards nothing (``ip_forward=0``): it is a host, not a router.
* ``natA``/``natB`` forward and masquerade their LAN out of ``wan``; they have no default
  route, so neither knows a way to the other LAN. Unsolicited packets to a NAT's public
  address reach the NAT box itself, never its LAN (no DNAT).
* Every veth is created directly inside the namespaces (nothing is added to the namespace this
  process runs in), every iptables rule lives in a namespace this lab owns: deleting the
  namespaces removes all of it. Addresses are private test ranges used only in these namespaces.

``python tests/nat/netlab.py up|down [PREFIX]`` builds or removes a lab by hand.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field

PUB_ADDR = "10.77.0.1"
NAT_WAN = {"A": "10.77.0.2", "B": "10.77.0.3"}
NAT_LAN = {"A": "192.168.51.1", "B": "192.168.52.1"}
HOST_LAN = {"A": "192.168.51.2", "B": "192.168.52.2"}
LAB_SUBNETS = ("10.77.0.0/24", "192.168.51.0/24", "192.168.52.0/24")


def _run(*args: str) -> None:
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=20)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")


def available() -> str | None:
    """None when a lab can be built here, else why not."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, veth pairs, iptables)"
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install iproute2 iptables)"
    probe = f"rtcaprobe{os.getpid()}"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if r.returncode != 0:
        return f"`ip netns add` does not work here: {r.stderr.strip()}"
    try:
        r = subprocess.run(["ip", "netns", "exec", probe, "iptables", "-t", "nat", "-L", "-n"],
                           capture_output=True, text=True, timeout=20)
        if r.returncode != 0:
            return f"iptables NAT does not work in a namespace: {r.stderr.strip()}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


LAB_NAMES = ("pub", "natA", "natB", "lanA", "lanB")


def sweep_stale() -> list[str]:
    """Delete lab namespaces (``rtca<pid>-<name>``) left by a test process that no longer
    exists (killed before its teardown ran). Returns the names removed."""
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                             timeout=10).stdout
    removed = []
    for line in listing.splitlines():
        m = re.fullmatch(r"(rtca(\d+)-(\w+))(?: \(id: \d+\))?", line.strip())
        if not m or m.group(3) not in LAB_NAMES or os.path.exists(f"/proc/{m.group(2)}"):
            continue
        subprocess.run(["ip", "netns", "del", m.group(1)], capture_output=True, timeout=20)
        removed.append(m.group(1))
    return removed


@dataclass
class NatLab:
    """Owns its namespaces (named ``<prefix>-pub`` etc.); :meth:`down` removes all of them."""

    prefix: str = field(default_factory=lambda: f"rtca{os.getpid()}")
    created: list[str] = field(default_factory=list)

    def ns(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def exec_args(self, name: str) -> list[str]:
        """Command prefix that runs a program inside namespace ``name``."""
        return ["ip", "netns", "exec", self.ns(name)]

    def _in(self, name: str, *args: str) -> None:
        _run("ip", "netns", "exec", self.ns(name), *args)

    def up(self) -> None:
        try:
            self._build()
        except BaseException:
            self.down()
            raise

    def _build(self) -> None:
        sweep_stale()
        for name in LAB_NAMES:
            _run("ip", "netns", "add", self.ns(name))
            self.created.append(self.ns(name))
            self._in(name, "ip", "link", "set", "lo", "up")
        pub = self.ns("pub")
        _run("ip", "-n", pub, "link", "add", "br0", "type", "bridge")
        _run("ip", "-n", pub, "addr", "add", f"{PUB_ADDR}/24", "dev", "br0")
        _run("ip", "-n", pub, "link", "set", "br0", "up")
        self._in("pub", "sysctl", "-qw", "net.ipv4.ip_forward=0")
        for side in ("A", "B"):
            nat, lan = self.ns(f"nat{side}"), self.ns(f"lan{side}")
            port = f"p{side.lower()}"
            _run("ip", "-n", nat, "link", "add", "wan", "type", "veth", "peer", "name", port,
                 "netns", pub)
            _run("ip", "-n", pub, "link", "set", port, "master", "br0")
            _run("ip", "-n", pub, "link", "set", port, "up")
            _run("ip", "-n", nat, "addr", "add", f"{NAT_WAN[side]}/24", "dev", "wan")
            _run("ip", "-n", nat, "link", "set", "wan", "up")
            _run("ip", "-n", lan, "link", "add", "eth0", "type", "veth", "peer", "name", "lan",
                 "netns", nat)
            _run("ip", "-n", nat, "addr", "add", f"{NAT_LAN[side]}/24", "dev", "lan")
            _run("ip", "-n", nat, "link", "set", "lan", "up")
            _run("ip", "-n", lan, "addr", "add", f"{HOST_LAN[side]}/24", "dev", "eth0")
            _run("ip", "-n", lan, "link", "set", "eth0", "up")
            _run("ip", "-n", lan, "route", "add", "default", "via", NAT_LAN[side])
            self._in(f"nat{side}", "sysctl", "-qw", "net.ipv4.ip_forward=1")
            self._in(f"lan{side}", "sysctl", "-qw", "net.ipv4.ip_forward=0")
            # The NAT: LAN traffic leaves with the NAT's public address; only replies come back.
            self._in(f"nat{side}", "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "wan",
                     "-j", "MASQUERADE")
            self._in(f"nat{side}", "iptables", "-A", "FORWARD", "-i", "wan", "-m", "conntrack",
                     "!", "--ctstate", "ESTABLISHED,RELATED", "-j", "DROP")

    def down(self) -> None:
        """Remove every namespace this lab created (and with them veths and iptables rules)."""
        for name in reversed(self.created):
            with contextlib.suppress(Exception):
                # Last resort only: the test stops its own processes first.
                for pid in subprocess.run(["ip", "netns", "pids", name], capture_output=True,
                                          text=True, timeout=5).stdout.split():
                    with contextlib.suppress(ProcessLookupError, ValueError):
                        os.kill(int(pid), 9)
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=20)
        self.created.clear()


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[1] not in ("up", "down"):
        print("usage: netlab.py up|down [PREFIX]", file=sys.stderr)
        return 2
    lab = NatLab(prefix=argv[2] if len(argv) > 2 else "rtcalab")
    if argv[1] == "up":
        lab.up()
    else:
        lab.created = [lab.ns(n) for n in LAB_NAMES]
        lab.down()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
