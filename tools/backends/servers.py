"""The shared-state servers a class can use as Pulumi backends, run locally for the tests.

- ``s3``: S3Proxy (org.gaul:s3proxy on Maven Central, a real S3 API server: SigV4
  authentication, buckets as directories through its ``filesystem-nio2`` store) on a loopback
  port, under Java 17; Pulumi reaches it as ``s3://BUCKET?endpoint=http://127.0.0.1:PORT&...``.
- ``postgres``: a private PostgreSQL cluster (Debian's ``postgresql`` package, ``initdb`` into a
  scratch directory, password authentication) on a loopback port, for ``postgres://``. As root
  it runs as the ``postgres`` account, its data outside the caller's home (which that account
  cannot enter); the system's own cluster is never touched.

Each instance is a directory (``--dir``, else ``$CALCLAB_BACKENDS_DIR``, else
``<cache>/backends``) holding its ports and secrets (``instance.json``, mode 0600), the pid
files and logs; the S3Proxy jar is downloaded once into ``<cache>/backends/downloads`` and
checked against the SHA-1 pinned here and published beside it on Maven Central. The tests start
a second instance in a temporary directory when they must stop a server under a running
``pulumi up``, so the shared one keeps serving everyone else.

The daemons run under tools/procsup (owner marker ``CALCLAB_BACKENDS_OWNER=<instance dir>``):
``stop`` leaves no process of the instance behind. Standard library only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pwd
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labctl.paths import cache_dir
from tools.procsup import procsup

S3PROXY_VERSION = "4.1.0"  # the newest release; built for Java 17 (its pom's java.version)
S3PROXY_SHA1 = "0a0b89e982bc1b1b5757d45b61109e05a840dd87"
S3PROXY_URL = (
    "https://repo1.maven.org/maven2/org/gaul/s3proxy/{v}/s3proxy-{v}-jar-with-dependencies.jar"
)
JAVA_MAJOR = 17
BUCKET = "calculator-lab-state"
REGION = "us-east-1"
ACCESS_KEY = "calculator-lab"
DATABASE = "calculator_lab_state"
PG_USER = "calclab"
PG_VERSION = "15"
PG_BIN = Path(f"/usr/lib/postgresql/{PG_VERSION}/bin")
OWNER_VAR = "CALCLAB_BACKENDS_OWNER"
SERVERS = ("s3", "postgres")
APT_PACKAGES = {"java": "default-jre-headless", "postgres": f"postgresql-{PG_VERSION}"}
# A cold JVM on a busy 2-core machine: 4 s idle, more under load.
START_TIMEOUT = 120.0


class BackendsError(RuntimeError):
    """Something this tool cannot do, said in one line."""


def say(message: str) -> None:
    print(f"backends: {message}", file=sys.stderr, flush=True)


def downloads() -> Path:
    return cache_dir() / "backends" / "downloads"


def default_dir() -> Path:
    return Path(os.environ.get("CALCLAB_BACKENDS_DIR") or cache_dir() / "backends")


# --- install ---------------------------------------------------------------------------------


def _apt_install(packages: Sequence[str]) -> None:
    say(f"apt-get install {' '.join(packages)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )


def java_major() -> int | None:
    java = shutil.which("java")
    if java is None:
        return None
    done = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    # `openjdk version "17.0.15" 2025-04-15`: the first quoted field, its first number.
    for line in done.stderr.splitlines():
        if '"' in line:
            version = line.split('"')[1]
            head = version.split(".")[0]
            return int(version.split(".")[1]) if head == "1" else int(head)
    return None


def _fetch(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=120) as answer:  # noqa: S310 (https, fixed)
            data: bytes = answer.read()
            return data
    except urllib.error.URLError as err:
        raise BackendsError(f"cannot download {url}: {err}") from None


def s3proxy_jar() -> Path:
    """The S3Proxy jar, downloaded once and checked: its SHA-1 must be the pinned one and the
    one Maven Central publishes in the `.sha1` file beside it."""
    jar = downloads() / f"s3proxy-{S3PROXY_VERSION}.jar"
    if jar.is_file() and hashlib.sha1(jar.read_bytes()).hexdigest() == S3PROXY_SHA1:  # noqa: S324
        return jar
    url = S3PROXY_URL.format(v=S3PROXY_VERSION)
    published = _fetch(url + ".sha1").decode().split()[0].strip()
    if published != S3PROXY_SHA1:
        raise BackendsError(
            f"{url}.sha1 says {published}, this tool pins {S3PROXY_SHA1}: not using it"
        )
    say(f"downloading {url}")
    started = time.monotonic()
    data = _fetch(url)
    digest = hashlib.sha1(data).hexdigest()  # noqa: S324 (Maven Central's published checksum)
    if digest != S3PROXY_SHA1:
        raise BackendsError(f"{url}: SHA-1 {digest}, expected {S3PROXY_SHA1}; not using it")
    jar.parent.mkdir(parents=True, exist_ok=True)
    partial = jar.with_suffix(".part")
    partial.write_bytes(data)
    partial.replace(jar)
    say(f"S3Proxy {S3PROXY_VERSION}: {len(data) >> 20} MiB in {time.monotonic() - started:.1f}s")
    return jar


def install(names: Sequence[str]) -> None:
    missing = []
    if "s3" in names and (java_major() or 0) < JAVA_MAJOR:
        missing.append(APT_PACKAGES["java"])
    if "postgres" in names and not (PG_BIN / "initdb").is_file():
        missing.append(APT_PACKAGES["postgres"])
    if missing:
        _apt_install(missing)
    if "s3" in names:
        if (major := java_major() or 0) < JAVA_MAJOR:
            raise BackendsError(f"S3Proxy needs Java {JAVA_MAJOR} or later, found {major}")
        s3proxy_jar()


# --- one instance ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def port_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class Instance:
    root: Path

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def supervisor(self) -> procsup.Supervisor:
        return procsup.Supervisor(self.run, self.run, str(self.root), OWNER_VAR)

    @property
    def settings_file(self) -> Path:
        return self.root / "instance.json"

    def settings(self) -> dict[str, Any]:
        """Ports and secrets, chosen on first use and kept: a restart keeps its URLs."""
        if self.settings_file.is_file():
            loaded: dict[str, Any] = json.loads(self.settings_file.read_text())
            return loaded
        self.root.mkdir(parents=True, exist_ok=True)
        settings = {
            "s3_port": int(os.environ.get("CALCLAB_S3_PORT") or free_port()),
            "postgres_port": int(os.environ.get("CALCLAB_POSTGRES_PORT") or free_port()),
            "s3_secret": secrets.token_hex(16),
            "postgres_password": secrets.token_hex(16),
        }
        fd = os.open(self.settings_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(settings, out, indent=2)
        return settings

    # -- S3Proxy

    @property
    def s3_data(self) -> Path:
        return self.root / "s3"

    def s3_url(self, prefix: str = "") -> str:
        port = self.settings()["s3_port"]
        path = f"/{prefix.strip('/')}" if prefix else ""
        # The SDK checks a response checksum S3Proxy does not send, warning on every read.
        return (
            f"s3://{BUCKET}{path}?endpoint=http://127.0.0.1:{port}&s3ForcePathStyle=true"
            f"&region={REGION}&response_checksum_validation=when_required"
        )

    def start_s3(self) -> None:
        settings = self.settings()
        port = settings["s3_port"]
        if self.supervisor.pid("s3proxy") is not None and port_answers(port):
            return
        jar = s3proxy_jar()
        (self.s3_data / BUCKET).mkdir(parents=True, exist_ok=True)  # a bucket is a directory
        self.run.mkdir(parents=True, exist_ok=True)
        conf = self.run / "s3proxy.conf"
        conf.write_text(
            f"s3proxy.endpoint=http://127.0.0.1:{port}\n"
            "s3proxy.authorization=aws-v2-or-v4\n"
            f"s3proxy.identity={ACCESS_KEY}\n"
            f"s3proxy.credential={settings['s3_secret']}\n"
            "jclouds.provider=filesystem-nio2\n"
            f"jclouds.filesystem.basedir={self.s3_data}\n"
        )
        conf.chmod(0o600)
        # A small heap and the client compiler: it starts in half the time, and stores a few
        # JSON files per stack.
        java = ["java", "-Xmx192m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"]
        self.supervisor.spawn(
            "s3proxy", [*java, "-jar", jar, "--properties", conf], os.environ, rotate_log=True
        )
        self._wait("S3Proxy", "s3proxy", lambda: port_answers(port))

    # -- PostgreSQL

    @property
    def as_postgres(self) -> bool:
        """Root runs the cluster as the `postgres` account (initdb refuses root)."""
        return os.geteuid() == 0

    @property
    def pg_root(self) -> Path:
        if not self.as_postgres:
            return self.root / "postgres"
        key = hashlib.sha256(str(self.root.resolve()).encode()).hexdigest()[:10]
        return Path("/var/tmp/calculator-lab") / f"postgres-{key}"

    def _as_pg(self, argv: Sequence[str | Path]) -> list[str]:
        if not self.as_postgres:
            return [str(a) for a in argv]
        drop = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]
        return drop + [str(a) for a in argv]

    def postgres_url(self, table: str = "") -> str:
        settings = self.settings()
        query = "sslmode=disable" + (f"&table={table}" if table else "")
        return (
            f"postgres://{PG_USER}:{settings['postgres_password']}@127.0.0.1:"
            f"{settings['postgres_port']}/{DATABASE}?{query}"
        )

    def _pg_answers(self, port: int) -> bool:
        probe: list[str | Path] = [PG_BIN / "pg_isready", "-q", "-h", "127.0.0.1", "-p", str(port)]
        return subprocess.run(probe, check=False).returncode == 0

    def start_postgres(self) -> None:
        settings = self.settings()
        port = settings["postgres_port"]
        if self.supervisor.pid("postgres") is not None and self._pg_answers(port):
            return
        if not (PG_BIN / "initdb").is_file():
            raise BackendsError(f"no {PG_BIN}/initdb: run `backends install postgres`")
        data = self.pg_root / "data"
        fresh = not (data / "PG_VERSION").is_file()
        if fresh:
            self._initdb(settings["postgres_password"])
        server: list[str | Path] = [
            PG_BIN / "postgres",
            "-D",
            data,
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ]
        server += ["-k", self.pg_root, "-c", f"cluster_name=calclab-{self.root.name}"]
        self.supervisor.spawn("postgres", self._as_pg(server), os.environ, rotate_log=True)
        self._wait("PostgreSQL", "postgres", lambda: self._pg_answers(port))
        if fresh:
            env = {**os.environ, "PGPASSWORD": settings["postgres_password"]}
            createdb = [PG_BIN / "createdb", "-h", "127.0.0.1", "-p", str(port), "-U", PG_USER]
            subprocess.run([*map(str, createdb), DATABASE], check=True, env=env)

    def _initdb(self, password: str) -> None:
        root = self.pg_root
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True, mode=0o700)
        pwfile = root / "pwfile"
        pwfile.write_text(password + "\n")
        if self.as_postgres:
            account = pwd.getpwnam("postgres")
            for path in (root, pwfile):
                os.chown(path, account.pw_uid, account.pw_gid)
        initdb: list[str | Path] = [
            PG_BIN / "initdb",
            "-D",
            root / "data",
            "-U",
            PG_USER,
            f"--pwfile={pwfile}",
        ]
        initdb += ["--auth=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]
        done = subprocess.run(self._as_pg(initdb), capture_output=True, text=True, check=False)
        pwfile.unlink()
        if done.returncode != 0:
            raise BackendsError(f"initdb failed in {root}: {done.stderr.strip()}")

    def stop_postgres(self) -> None:
        pid = self.supervisor.pid("postgres")
        if pid is not None:
            # SIGINT: PostgreSQL's fast shutdown (sessions are ended, not waited for).
            os.kill(pid, signal.SIGINT)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and self.supervisor.pid("postgres") is not None:
                time.sleep(0.1)
        self.supervisor.stop(["postgres"], grace=5.0)

    def _wait(self, what: str, name: str, probe: Callable[[], bool]) -> None:
        started = time.monotonic()
        self.supervisor.wait_ready(
            what, probe, START_TIMEOUT, interval=0.2, name=name, log=self.supervisor.logfile(name)
        )
        say(f"{what} ready in {time.monotonic() - started:.1f}s ({self.root})")

    # -- all

    def start(self, names: Sequence[str]) -> None:
        for name in names:
            self.start_s3() if name == "s3" else self.start_postgres()

    def stop(self, names: Sequence[str]) -> None:
        for name in names:
            if name == "s3":
                self.supervisor.stop(["s3proxy"], grace=10.0)
            else:
                self.stop_postgres()
        if set(names) == set(SERVERS):
            self.supervisor.reap(grace=5.0)

    def running(self, name: str) -> bool:
        settings = self.settings()
        if name == "s3":
            return self.supervisor.pid("s3proxy") is not None and port_answers(settings["s3_port"])
        return self.supervisor.pid("postgres") is not None and self._pg_answers(
            settings["postgres_port"]
        )

    def describe(self) -> dict[str, Any]:
        """What a client needs: URLs and credentials, and whether each server answers."""
        settings = self.settings()
        return {
            "dir": str(self.root),
            "s3": {
                "running": self.running("s3"),
                "url": self.s3_url(),
                "port": settings["s3_port"],
                "bucket": BUCKET,
                "region": REGION,
                "data": str(self.s3_data),
                "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": settings["s3_secret"],
            },
            "postgres": {
                "running": self.running("postgres"),
                "url": self.postgres_url(),
                "port": settings["postgres_port"],
                "data": str(self.pg_root / "data"),
            },
        }


# --- command line ----------------------------------------------------------------------------


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="backends", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=None, help="the instance's directory")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in ("install", "start", "stop", "status"):
        one = sub.add_parser(command)
        one.add_argument("names", nargs="*", metavar="{s3,postgres}", help="default: both")
    env = sub.add_parser("env", help="export lines (or --json) for clients")
    env.add_argument("--json", action="store_true")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    instance = Instance((args.dir or default_dir()).absolute())
    names: list[str] = list(dict.fromkeys(getattr(args, "names", None) or SERVERS))
    if unknown := [n for n in names if n not in SERVERS]:
        say(f"error: unknown server {', '.join(unknown)}; known: {', '.join(SERVERS)}")
        return 2
    try:
        if args.command == "install":
            install(names)
        elif args.command == "start":
            instance.start(names)
        elif args.command == "stop":
            instance.stop(names)
        elif args.command == "status":
            down = [n for n in names if not instance.running(n)]
            for name in names:
                say(f"{name}: {'stopped' if name in down else 'running'} ({instance.root})")
            return 3 if down else 0
        elif args.command == "env":
            described = instance.describe()
            if args.json:
                print(json.dumps(described, indent=2))
                return 0
            s3 = described["s3"]
            lines = {
                "CALCLAB_S3_BACKEND_URL": s3["url"],
                "AWS_ACCESS_KEY_ID": s3["AWS_ACCESS_KEY_ID"],
                "AWS_SECRET_ACCESS_KEY": s3["AWS_SECRET_ACCESS_KEY"],
                "CALCLAB_POSTGRES_BACKEND_URL": described["postgres"]["url"],
            }
            for key, value in lines.items():
                print(f"export {key}={shlex.quote(value)}")
    except (BackendsError, procsup.ProcsupError, subprocess.CalledProcessError) as err:
        say(f"error: {err}")
        return 1
    return 0
