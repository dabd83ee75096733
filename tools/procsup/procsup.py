"""procsup: the process supervisor of our tools, for machines without systemd.

A ``Supervisor`` starts daemons detached (own session, stdin from /dev/null, output appended
to a log), records each one's pid in ``RUN_DIR/NAME.pid``, waits for them to be ready, and
stops them: SIGTERM, a grace period, then SIGKILL. It knows what it owns without trusting a
pid file alone: every process it starts carries ``OWNER_VAR=OWNER`` in its environment, which
children inherit; a pid-file process whose command line names OWNER counts too (setproctitle
overwrites the memory /proc/PID/environ shows), and so does any descendant of an owned
process. Nothing else on the machine is ever signalled.

Used as a module by tools/testcloud and as a command by tools/docker-engine (a bash script):

    procsup.py --run-dir DIR --owner VALUE [--owner-var NAME] [--log-dir DIR] COMMAND
      start NAME [--env K=V]... [--rotate-log] -- CMD...   spawn (environment inherited)
      wait NAME --timeout S [--interval S] -- PROBE...     exit 0 ready, 3 NAME died, 4 timeout
      pid NAME                                             print it; exit 0 alive, 1 not
      stop NAME... --grace S [--leader-only] [--leftovers-grace S]
      pids                                                 every owned process

Standard library only: it runs on the system Python before any virtualenv exists.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

# After SIGKILL a process is gone as soon as the kernel has torn it down; this is generous.
KILL_WAIT_S = 5.0


class ProcsupError(RuntimeError):
    """A daemon did not start, did not become ready, or survived SIGKILL."""


class DiedError(ProcsupError):
    """The daemon exited while we waited for it to become ready."""


@dataclass(frozen=True)
class ProcessTable:
    """One reading of /proc: parent of every live process, and what proves ownership."""

    parents: dict[int, int]
    environ: dict[int, list[bytes]]
    cmdline: dict[int, bytes]

    @classmethod
    def read(cls) -> ProcessTable:
        parents: dict[int, int] = {}
        environ: dict[int, list[bytes]] = {}
        cmdline: dict[int, bytes] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            try:
                stat = (entry / "stat").read_text()
                env = (entry / "environ").read_bytes()
                cmd = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            # The command name in stat may hold spaces and parentheses; the state and the
            # ppid follow the last closing parenthesis.
            fields = stat.rsplit(")", 1)[1].split()
            if fields[0] == "Z":
                # Exited; it only waits for its parent to reap it.
                continue
            parents[pid] = int(fields[1])
            environ[pid] = env.split(b"\0")
            cmdline[pid] = cmd
        return cls(parents, environ, cmdline)

    def with_descendants(self, roots: Iterable[int]) -> set[int]:
        family = set(roots) & self.parents.keys()
        while True:
            children = {pid for pid, ppid in self.parents.items() if ppid in family} - family
            if not children:
                return family
            family |= children


@dataclass(frozen=True)
class Supervisor:
    """The daemons of one tool instance: pid files in ``run_dir``, logs in ``log_dir``."""

    run_dir: Path
    log_dir: Path
    owner: str
    owner_var: str = "CALCLAB_OWNER"

    def pidfile(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def logfile(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def marked(self, env: Mapping[str, str]) -> dict[str, str]:
        """``env`` plus the owner marker: what every daemon we start runs with."""
        return {**env, self.owner_var: self.owner}

    # ------------------------------------------------------------------ who is ours

    def _recorded(self, name: str) -> int | None:
        try:
            return int(self.pidfile(name).read_text().strip())
        except (OSError, ValueError):
            return None

    def _owned(self, table: ProcessTable) -> set[int]:
        marker = f"{self.owner_var}={self.owner}".encode()
        owned = {pid for pid, env in table.environ.items() if marker in env}
        if self.run_dir.is_dir():
            for pidfile in self.run_dir.glob("*.pid"):
                pid = self._recorded(pidfile.stem)
                if pid is not None and self.owner.encode() in table.cmdline.get(pid, b""):
                    owned.add(pid)
        owned = table.with_descendants(owned)
        owned.discard(os.getpid())
        return owned

    def owned(self) -> list[int]:
        """Every live process we started, and all their descendants."""
        return sorted(self._owned(ProcessTable.read()))

    def pid(self, name: str) -> int | None:
        """The pid of daemon ``name`` if it runs (and is ours), else None."""
        pid = self._recorded(name)
        return pid if pid is not None and pid in self.owned() else None

    # ------------------------------------------------------------------ start

    def spawn(
        self,
        name: str,
        cmd: Sequence[str | Path],
        env: Mapping[str, str],
        *,
        cwd: Path | None = None,
        rotate_log: bool = False,
    ) -> int:
        """Start ``cmd`` detached in a session of its own; output goes to its log.

        ``rotate_log`` keeps the previous log as ``NAME.log.1`` and starts a fresh one;
        otherwise the log is appended to.
        """
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.logfile(name)
        if rotate_log and log.exists():
            log.replace(log.with_name(log.name + ".1"))
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [str(c) for c in cmd],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.marked(env),
                cwd=cwd,
                # Its own session: the caller's process group can exit or be interrupted
                # without taking the daemon down half-way.
                start_new_session=True,
            )
        self.pidfile(name).write_text(str(proc.pid))
        return proc.pid

    def wait_ready(
        self,
        what: str,
        probe: Callable[[], bool],
        timeout: float,
        *,
        interval: float = 0.5,
        name: str | None = None,
        log: Path | None = None,
    ) -> None:
        """Poll ``probe`` until it answers True; with ``name``, fail early if that daemon dies."""
        deadline = time.monotonic() + timeout
        where = f"; see {log}" if log else ""
        pid = None if name is None else self.pid(name)
        if name is not None and pid is None:
            raise DiedError(f"{what} exited during start-up{where}")
        while time.monotonic() < deadline:
            if probe():
                return
            if pid is not None and not _alive(pid):
                raise DiedError(f"{what} exited during start-up{where}")
            time.sleep(interval)
        raise ProcsupError(f"{what} not ready after {timeout:.0f} s{where}")

    # ------------------------------------------------------------------ stop

    def _wait_gone(self, pids: set[int], timeout: float, interval: float) -> set[int]:
        deadline = time.monotonic() + timeout
        while pids and time.monotonic() < deadline:
            time.sleep(interval)
            pids &= self._owned(ProcessTable.read())
        return pids

    def stop(self, names: Sequence[str], grace: float, *, leader_only: bool = False) -> None:
        """SIGTERM the named daemons and everything below them, SIGKILL whatever outlives
        ``grace``. With ``leader_only`` only the daemons themselves get SIGTERM (dockerd stops
        its own containers and containerd, and must not see them die under it); the wait is
        still for the whole family."""
        table = ProcessTable.read()
        owned = self._owned(table)
        roots = {pid for pid in map(self._recorded, names) if pid is not None and pid in owned}
        family = table.with_descendants(roots) & owned
        _signal(roots if leader_only else family, signal.SIGTERM)
        family = self._wait_gone(family, grace, 0.2)
        _signal(family, signal.SIGKILL)
        self._wait_gone(family, KILL_WAIT_S, 0.1)
        for name in names:
            self.pidfile(name).unlink(missing_ok=True)

    def kill(self, name: str) -> bool:
        """SIGKILL one daemon and its children, as a crash would; False if it was not running."""
        table = ProcessTable.read()
        owned = self._owned(table)
        root = self._recorded(name)
        self.pidfile(name).unlink(missing_ok=True)
        if root is None or root not in owned:
            return False
        _signal(table.with_descendants({root}) & owned, signal.SIGKILL)
        return True

    def reap(self, grace: float = 0.0) -> list[int]:
        """End every owned process still alive: SIGTERM and ``grace`` first if it is not 0,
        then SIGKILL. Returns what it found; raises if anything survives SIGKILL."""
        leftovers = self._owned(ProcessTable.read())
        found = sorted(leftovers)
        if leftovers and grace > 0:
            _signal(leftovers, signal.SIGTERM)
            leftovers = self._wait_gone(leftovers, grace, 0.2)
        _signal(leftovers, signal.SIGKILL)
        self._wait_gone(leftovers, KILL_WAIT_S, 0.1)
        still = self.owned()
        if still:
            raise ProcsupError(f"processes survived SIGKILL: {still}")
        return found


def _alive(pid: int) -> bool:
    """Cheaper than a full ownership scan, for a pid already known to be ours."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _signal(pids: Iterable[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def rss_total_kib(pids: Iterable[int]) -> int:
    """Resident memory of ``pids`` together, in KiB."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


# ---------------------------------------------------------------------- command line


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="procsup", description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True, help="where the pid files live")
    parser.add_argument("--log-dir", type=Path, help="where the logs go (default: --run-dir)")
    parser.add_argument("--owner", required=True, help="marker value: the tool's state dir")
    parser.add_argument("--owner-var", default="CALCLAB_OWNER", help="marker variable name")
    parser.add_argument("--prog", default="procsup", help="name to prefix messages with")
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="spawn a daemon (inherits the environment)")
    start.add_argument("name")
    start.add_argument("--env", action="append", default=[], metavar="K=V")
    start.add_argument("--rotate-log", action="store_true")
    start.add_argument("cmd", nargs="+")
    wait = sub.add_parser("wait", help="run PROBE until it exits 0")
    wait.add_argument("name")
    wait.add_argument("--timeout", type=float, required=True)
    wait.add_argument("--interval", type=float, default=0.5)
    wait.add_argument("probe", nargs="+")
    pid = sub.add_parser("pid", help="print the daemon's pid; exit 1 unless it runs")
    pid.add_argument("name")
    stop = sub.add_parser("stop", help="stop daemons, then every leftover owned process")
    stop.add_argument("names", nargs="+")
    stop.add_argument("--grace", type=float, required=True)
    stop.add_argument("--leader-only", action="store_true")
    stop.add_argument("--leftovers-grace", type=float, default=0.0)
    sub.add_parser("pids", help="list every owned process")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    sup = Supervisor(args.run_dir, args.log_dir or args.run_dir, args.owner, args.owner_var)

    def say(message: str) -> None:
        print(f"{args.prog}: {message}", file=sys.stderr, flush=True)

    try:
        if args.command == "start":
            env = dict(os.environ)
            env.update(item.split("=", 1) for item in args.env)
            print(sup.spawn(args.name, args.cmd, env, rotate_log=args.rotate_log))
        elif args.command == "wait":

            def probe() -> bool:
                done = subprocess.run(args.probe, capture_output=True, check=False)
                return done.returncode == 0

            try:
                sup.wait_ready(
                    args.name, probe, args.timeout, interval=args.interval, name=args.name
                )
            except DiedError:
                return 3
            except ProcsupError:
                return 4
        elif args.command == "pid":
            pid = sup.pid(args.name)
            if pid is None:
                return 1
            print(pid)
        elif args.command == "stop":
            sup.stop(args.names, args.grace, leader_only=args.leader_only)
            if sup.owned():
                say(f"terminating leftover processes: {' '.join(map(str, sup.owned()))}")
            sup.reap(args.leftovers_grace)
        elif args.command == "pids":
            print("\n".join(map(str, sup.owned())))
    except ProcsupError as err:
        say(f"error: {err}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
