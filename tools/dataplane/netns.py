"""Builds a `Plan` on this machine out of network namespaces, bridges, veth pairs and dnsmasq.

Nothing is created in the root namespace: the bridges, and the guests' taps, live in a
namespace of their own (`<prefix>-net`), each router, DHCP server and the outside host in
another (`<prefix>-<key>`), joined to the bridges by veth pairs created directly in their
namespaces. So several data planes (two CI runs, say) can coexist as long as their prefixes
differ, and tearing one down is deleting its namespaces and stopping its dnsmasq processes.

Needs root, iproute2, iptables and dnsmasq; the kernel needs netns, veth, bridge and NAT.
"""

from __future__ import annotations

import ctypes
import http.client
import os
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from tools.dataplane.plan import DhcpServer, Namespace, Plan

T = TypeVar("T")
_CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")
#: Tools the data plane runs, with the Debian package that has each.
HOST_TOOLS = {
    "ip": "iproute2",
    "iptables": "iptables",
    "dnsmasq": "dnsmasq-base",
    "setpriv": "util-linux",
}


class DataPlaneError(RuntimeError):
    """A command that builds the data plane failed; the message has its output."""


def missing_host_tools() -> list[str]:
    """Debian packages to install before a data plane can be built here."""
    return sorted({pkg for tool, pkg in HOST_TOOLS.items() if shutil.which(tool) is None})


def tied_to_us(argv: Sequence[str]) -> list[str]:
    """`argv` made to die with this process (SIGKILL when its parent dies, setpriv's
    --pdeathsig): a test run killed outright leaves no qemu or dnsmasq running."""
    return ["setpriv", "--pdeathsig", "KILL", *argv]


def run(argv: Sequence[str], *, timeout: float = 30.0) -> str:
    result = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise DataPlaneError(
            f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}"
        )
    return result.stdout


def in_netns(name: str, work: Callable[[], T]) -> T:
    """Run `work` in network namespace `name` (on a thread of its own, which is the unit
    setns(2) moves), and return its result. Sockets it creates stay in that namespace."""
    libc = ctypes.CDLL(None, use_errno=True)
    outcome: list[T] = []
    failure: list[BaseException] = []

    def thread() -> None:
        try:
            fd = os.open(NETNS_DIR / name, os.O_RDONLY)
            try:
                if libc.setns(fd, _CLONE_NEWNET) != 0:
                    error = ctypes.get_errno()
                    raise OSError(error, f"setns {name}: {os.strerror(error)}")
            finally:
                os.close(fd)
            outcome.append(work())
        except BaseException as error:  # handed to the caller below
            failure.append(error)

    worker = threading.Thread(target=thread, name=f"netns-{name}")
    worker.start()
    worker.join()
    if failure:
        raise failure[0]
    return outcome[0]


def connect(netns: str, host: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection made from inside `netns`."""
    return in_netns(netns, lambda: socket.create_connection((host, port), timeout=timeout))


@dataclass(frozen=True)
class HttpReply:
    status: int
    text: str
    headers: dict[str, str]


def http_request(
    netns: str,
    host: str,
    port: int,
    *,
    body: str | None = None,
    path: str = "/",
    timeout: float = 10.0,
) -> HttpReply:
    """One HTTP request sent from inside `netns` (POST when there is a body, else GET)."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    connection.sock = connect(netns, host, port, timeout)
    try:
        connection.request("GET" if body is None else "POST", path, body=body)
        response = connection.getresponse()
        text = response.read().decode("utf-8", "replace")
        headers = {key.lower(): value for key, value in response.getheaders()}
        return HttpReply(response.status, text, headers)
    finally:
        connection.close()


def pid_prefix(stem: str = "calclab") -> str:
    """A prefix unique to this process, which `stale_namespaces` can later recognise."""
    return f"{stem}{os.getpid()}"


def stale_namespaces(stem: str = "calclab") -> list[str]:
    """Namespaces of `pid_prefix` data planes whose process is gone (killed before its
    teardown; its qemu and dnsmasq died with it, see `tied_to_us`, but the names stay)."""
    stale = []
    for path in sorted(NETNS_DIR.glob(f"{stem}*-*")):
        pid = path.name.removeprefix(stem).split("-", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            stale.append(path.name)
    return stale


@dataclass
class NetnsDataPlane:
    """One plan built under one prefix. Use as a context manager: `down()` always runs."""

    plan: Plan
    prefix: str
    rundir: Path
    _namespaces: list[str] = field(default_factory=list)
    _dnsmasq: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def bridges(self) -> str:
        """The namespace holding the bridges (one per segment) and the guests' taps."""
        return f"{self.prefix}-net"

    def netns(self, key: str) -> str:
        return f"{self.prefix}-{key}"

    def bridge(self, segment: str) -> str:
        return f"br-{segment}"

    def __enter__(self) -> NetnsDataPlane:
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.down()

    def up(self) -> None:
        self.rundir.mkdir(parents=True, exist_ok=True)
        self._add_netns(self.bridges)
        for segment in self.plan.segments:
            run(["ip", "-n", self.bridges, "link", "add", self.bridge(segment), "type", "bridge"])
            run(["ip", "-n", self.bridges, "link", "set", self.bridge(segment), "up"])
        for namespace in self.plan.namespaces:
            self._build(namespace)
        for server in self.plan.dhcp:
            self._start_dhcp(server)

    def add_tap(self, ifname: str, segment: str) -> None:
        """A tap on `segment`'s bridge, for a guest started in `self.bridges`."""
        run(["ip", "-n", self.bridges, "tuntap", "add", ifname, "mode", "tap"])
        run(["ip", "-n", self.bridges, "link", "set", ifname, "master", self.bridge(segment)])
        run(["ip", "-n", self.bridges, "link", "set", ifname, "up"])

    def exec_argv(self, key: str, argv: Sequence[str]) -> list[str]:
        """`argv` run inside the namespace of plan entry `key` (or the bridges' namespace)."""
        name = self.bridges if key == "net" else self.netns(key)
        return ["ip", "netns", "exec", name, *argv]

    def down(self) -> list[str]:
        """Stop our dnsmasq processes and delete our namespaces; report, never raise, what
        could not be undone (so a failing test's own error is the one shown)."""
        problems: list[str] = []
        for process in self._dnsmasq:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)
        self._dnsmasq.clear()
        for name in reversed(self._namespaces):
            try:
                run(["ip", "netns", "delete", name])
            except (DataPlaneError, subprocess.TimeoutExpired) as error:
                problems.append(str(error))
        self._namespaces.clear()
        return problems

    def _add_netns(self, name: str) -> None:
        if (NETNS_DIR / name).exists():
            raise DataPlaneError(f"network namespace {name} exists already: another data plane?")
        run(["ip", "netns", "add", name])
        self._namespaces.append(name)
        run(["ip", "-n", name, "link", "set", "lo", "up"])

    def _build(self, namespace: Namespace) -> None:
        name = self.netns(namespace.key)
        self._add_netns(name)
        for port in namespace.ports:
            # Both ends are created directly in their namespaces: nothing appears in the root one.
            run(["ip", "link", "add", port.peer, "netns", self.bridges, "type", "veth",
                 "peer", "name", port.ifname, "netns", name])  # fmt: skip
            run(["ip", "-n", self.bridges, "link", "set", port.peer,
                 "master", self.bridge(port.segment), "up"])  # fmt: skip
            run(["ip", "-n", name, "addr", "add", str(port.address), "dev", port.ifname])
            run(["ip", "-n", name, "link", "set", port.ifname, "up"])
        for ifname, address in namespace.extra_addresses:
            run(["ip", "-n", name, "addr", "add", str(address), "dev", ifname])
        for route in namespace.routes:
            run(["ip", "-n", name, "route", "add", str(route.destination), "via", str(route.via)])
        if namespace.forwarding:
            in_netns(name, lambda: Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n"))
        for rule in namespace.nat_rules:
            run(["ip", "netns", "exec", name, "iptables", "-w", "-t", "nat", *rule])

    def _start_dhcp(self, server: DhcpServer) -> None:
        """dnsmasq as Neutron's DHCP agent runs it: static leases only, by MAC."""
        name = self.netns(server.namespace)
        tag = server.namespace
        options = [f"option:router,{server.router}"]
        if server.classless_routes:
            routes = ",".join(f"{r.destination},{r.via}" for r in server.classless_routes)
            options += [f"option:classless-static-route,{routes}", f"249,{routes}"]
        argv = [
            # Staying root: dropping to nobody/nogroup would clear the parent-death signal (the
            # kernel resets it on a credential change); it serves only our own namespace.
            "dnsmasq", "--keep-in-foreground", "--user=root", "--group=root",
            "--no-hosts", "--no-resolv", "--port=0",
            "--bind-interfaces", f"--interface={server.ifname}", "--except-interface=lo",
            "--dhcp-authoritative", "--log-dhcp", f"--log-facility={self.rundir / tag}.log",
            f"--dhcp-range={server.subnet.network_address},static,{server.subnet.netmask},12h",
            f"--dhcp-leasefile={self.rundir / tag}.leases",
            f"--pid-file={self.rundir / tag}.pid",
            # On the command line rather than in a --dhcp-hostsfile: dnsmasq reads that file
            # after dropping to `nobody`, who may not be able to (pytest's 0700 tmp dirs).
            *(f"--dhcp-host={lease.mac},{lease.ip},{lease.hostname}" for lease in server.leases),
            *(f"--dhcp-option={option}" for option in options),
        ]  # fmt: skip
        process = subprocess.Popen(
            tied_to_us(["ip", "netns", "exec", name, *argv]),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=(self.rundir / f"{tag}.stderr").open("wb"),
        )
        self._dnsmasq.append(process)
        try:
            process.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            return  # still running: it bound its socket
        raise DataPlaneError(
            f"dnsmasq for {server.subnet} exited ({process.returncode}): "
            + (self.rundir / f"{tag}.stderr").read_text()
        )
