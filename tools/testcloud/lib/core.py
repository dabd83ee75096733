"""Where the test cloud lives and what it listens on; messages and logged commands."""

from __future__ import annotations

import hashlib
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from labctl.paths import cache_dir
from tools.procsup import procsup

TOOL_DIR = Path(__file__).resolve().parents[1]
REPO = TOOL_DIR.parents[1]
CONSTRAINTS = TOOL_DIR / "constraints-2026.1.txt"
DRIVER_SRC = TOOL_DIR / "calclab_ml2"

HOST = "127.0.0.1"
REGION = "RegionOne"
# MariaDB and RabbitMQ listen on ports of their own so that a system instance started by a
# package's postinst (on machines without a policy-rc.d) cannot collide with ours.
DB_PORT = 13306
AMQP_PORT = 5682
AMQP_DIST_PORT = 25682
KEYSTONE_PORT = 5000
COMPUTE_HOST = "testcloud-compute"

# Every daemon we start carries this variable; ``stop`` finds stragglers (uwsgi children,
# epmd, Erlang helpers) by it, so nothing we launched survives and nothing else is touched.
OWNER_VAR = "CALCLAB_TESTCLOUD_OWNER"


class TestcloudError(RuntimeError):
    """A step failed; the message says which and where its log is."""


def cache_root() -> Path:
    return cache_dir() / "testcloud"


@dataclass(frozen=True)
class Layout:
    """Where everything lives under the cache root."""

    root: Path

    @property
    def venv(self) -> Path:
        return self.root / "venv"

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    @property
    def client_bin(self) -> Path:
        """What ``env`` puts on PATH: the clients only, not the virtualenv's python or pip."""
        return self.root / "bin"

    @property
    def etc(self) -> Path:
        return self.root / "etc"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def log(self) -> Path:
        return self.root / "log"

    @property
    def done(self) -> Path:
        return self.state / "done"

    @property
    def secrets_file(self) -> Path:
        return self.state / "secrets.json"

    @property
    def clouds_yaml(self) -> Path:
        return self.root / "clouds.yaml"

    @property
    def db_socket(self) -> Path:
        return self.run / "mariadb.sock"

    @property
    def supervisor(self) -> procsup.Supervisor:
        return procsup.Supervisor(self.run, self.log, str(self.root), OWNER_VAR)

    def logfile(self, name: str) -> Path:
        return self.log / f"{name}.log"

    def daemon_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The whole environment of a daemon or setup step: nothing of the caller's leaks in."""
        env = {
            "PATH": f"{self.bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(self.state),
            "LANG": "C.UTF-8",
        }
        env.update(extra or {})
        return self.supervisor.marked(env)


T0 = time.monotonic()


def say(message: str) -> None:
    print(f"testcloud [{time.monotonic() - T0:5.1f} s]: {message}", flush=True)


def file_digest(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for item in files:
            if "__pycache__" in item.parts or ".egg-info" in str(item) or "build" in item.parts:
                continue
            digest.update(str(item.relative_to(path.parent)).encode())
            digest.update(item.read_bytes())
    return digest.hexdigest()[:16]


def run_logged(cmd: Sequence[str | Path], log: Path, env: dict[str, str] | None = None) -> None:
    """Run a setup command, appending its output to ``log``; fail with the log's tail."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(map(str, cmd))}\n".encode())
        out.flush()
        result = subprocess.run(
            [str(c) for c in cmd], stdout=out, stderr=subprocess.STDOUT, env=env, check=False
        )
    if result.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-25:]
        raise TestcloudError(
            f"{Path(str(cmd[0])).name} exited {result.returncode}; see {log}:\n" + "\n".join(tail)
        )
