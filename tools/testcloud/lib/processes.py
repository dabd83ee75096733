"""The test cloud's processes, in one table, and how each is started, checked and stopped.

Starting, pid files, ownership and stopping are the shared supervisor's (tools/procsup);
this module says what runs: the command line, environment and port of each process.
"""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .core import (
    AMQP_DIST_PORT,
    AMQP_PORT,
    DB_PORT,
    HOST,
    KEYSTONE_PORT,
    Layout,
    TestcloudError,
)

RABBIT_NODE = "testcloud@localhost"

# SIGTERM is enough for the web servers, but nova's conductor, scheduler and compute ignore
# it for over a minute; after this grace they get SIGKILL.
KILL_GRACE_S = 3.0
# MariaDB gets time for a clean shutdown: its databases make the next start quick.
DB_STOP_GRACE_S = 30.0


@dataclass(frozen=True)
class Process:
    """One daemon: how to run it, and where it listens when it has a port of its own."""

    name: str
    argv: Callable[[Layout], list[str]]
    env: Callable[[Layout], dict[str, str]]
    port: int | None = None
    # Ready when an HTTP request to the port gets any answer below 500.
    http: bool = False
    # Infrastructure stops last and slowly, after everything that writes to it.
    infrastructure: bool = False
    # Directories under the cache root that must exist before it starts.
    dirs: tuple[str, ...] = ()


def mariadb_argv(lay: Layout) -> list[str]:
    return [
        "/usr/sbin/mariadbd",
        "--no-defaults",
        f"--datadir={lay.state / 'mysql'}",
        f"--socket={lay.db_socket}",
        f"--port={DB_PORT}",
        f"--bind-address={HOST}",
        "--user=root",
        f"--pid-file={lay.run / 'mariadbd.pid'}",
        f"--log-error={lay.logfile('mariadb')}",
        "--skip-name-resolve",
        "--default-time-zone=+00:00",
        "--max-connections=1000",
        "--innodb-buffer-pool-size=256M",
        # Durability is worthless for a disposable test cloud; speed of the schema
        # migrations is not.
        "--innodb-flush-log-at-trx-commit=0",
        "--innodb-doublewrite=0",
        "--sync-binlog=0",
    ]


def rabbitmq_env(lay: Layout) -> dict[str, str]:
    return lay.daemon_env(
        {
            "HOME": str(lay.state / "rabbitmq"),
            "RABBITMQ_NODENAME": RABBIT_NODE,
            "RABBITMQ_NODE_IP_ADDRESS": HOST,
            "RABBITMQ_NODE_PORT": str(AMQP_PORT),
            "RABBITMQ_DIST_PORT": str(AMQP_DIST_PORT),
            "RABBITMQ_MNESIA_BASE": str(lay.state / "rabbitmq" / "mnesia"),
            "RABBITMQ_LOG_BASE": str(lay.log / "rabbitmq"),
            "RABBITMQ_CONFIG_FILE": str(lay.etc / "rabbitmq" / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(lay.etc / "rabbitmq" / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(lay.etc / "rabbitmq" / "rabbitmq-env.conf"),
            "RABBITMQ_PID_FILE": str(lay.run / "rabbitmq-server.pid"),
        }
    )


def web(name: str, port: int, module: str, config_env: str, config_dir: str) -> Process:
    """A WSGI application served by pyuwsgi on one loopback port."""

    def argv(lay: Layout) -> list[str]:
        return [
            str(lay.bin / "uwsgi"),
            "--http-socket",
            f"{HOST}:{port}",
            "--module",
            module,
            "--processes",
            "1",
            "--threads",
            "4",
            "--die-on-term",
            "--need-app",
            "--buffer-size",
            "65535",
            # Keep-alive connections were reset under uwsgi's http-socket; one request per
            # connection avoids it at negligible cost on loopback.
            "--add-header",
            "Connection: close",
            "--disable-logging",
        ]

    def env(lay: Layout) -> dict[str, str]:
        return lay.daemon_env({config_env: str(lay.etc / config_dir)})

    return Process(name, argv, env, port=port, http=True)


def nova_daemon(name: str, config_dir: str) -> Process:
    def argv(lay: Layout) -> list[str]:
        return [str(lay.bin / name), "--config-file", str(lay.etc / config_dir / "nova.conf")]

    return Process(name, argv, lambda lay: lay.daemon_env())


PROCESSES = (
    Process(
        "mariadb",
        mariadb_argv,
        lambda lay: lay.daemon_env(),
        port=DB_PORT,
        infrastructure=True,
    ),
    Process(
        "rabbitmq",
        lambda lay: ["/usr/lib/rabbitmq/bin/rabbitmq-server"],
        rabbitmq_env,
        port=AMQP_PORT,
        infrastructure=True,
        dirs=("state/rabbitmq", "log/rabbitmq"),
    ),
    web(
        "keystone",
        KEYSTONE_PORT,
        "keystone.wsgi.api:application",
        "OS_KEYSTONE_CONFIG_DIR",
        "keystone",
    ),
    web(
        "placement",
        8778,
        "placement.wsgi.api:application",
        "OS_PLACEMENT_CONFIG_DIR",
        "placement",
    ),
    web("glance", 9292, "glance.wsgi.api:application", "OS_GLANCE_CONFIG_DIR", "glance"),
    web("neutron", 9696, "neutron.wsgi.api:application", "OS_NEUTRON_CONFIG_DIR", "neutron"),
    web(
        "nova-api",
        8774,
        "nova.wsgi.osapi_compute:application",
        "OS_NOVA_CONFIG_DIR",
        "nova",
    ),
    nova_daemon("nova-conductor", "nova"),
    nova_daemon("nova-scheduler", "nova"),
    nova_daemon("nova-compute", "nova-compute"),
)
BY_NAME = {p.name: p for p in PROCESSES}
WEB_SERVICES = tuple(p.name for p in PROCESSES if p.http)
NOVA_DAEMONS = ("nova-conductor", "nova-scheduler", "nova-compute")
# The OpenStack services, in the order they stop (all at once, but the list reads as such).
SERVICE_NAMES = (
    *NOVA_DAEMONS,
    *(p.name for p in reversed(PROCESSES) if p.http),
)
INFRASTRUCTURE = tuple(p.name for p in reversed(PROCESSES) if p.infrastructure)


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def http_answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/", timeout=5) as resp:
            return bool(resp.status < 500)
    except urllib.error.HTTPError as err:
        # 300 (version list) and 401 both prove the application is loaded.
        return err.code < 500
    except OSError:
        return False


def running(lay: Layout, name: str) -> int | None:
    return lay.supervisor.pid(name)


def start(lay: Layout, name: str) -> bool:
    """Start ``name`` unless it runs; True when it was started now."""
    proc = BY_NAME[name]
    if running(lay, name) is not None:
        return False
    for rel in proc.dirs:
        (lay.root / rel).mkdir(parents=True, exist_ok=True)
    # A foreign listener would answer our readiness probes and hide a failed start.
    if proc.port is not None and port_open(proc.port):
        raise TestcloudError(f"port {HOST}:{proc.port} for {name} is taken by another process")
    lay.supervisor.spawn(name, proc.argv(lay), proc.env(lay), cwd=lay.state)
    return True


def wait_for(
    lay: Layout, what: str, probe: Callable[[], bool], timeout: float, log: Path | None = None
) -> None:
    lay.supervisor.wait_ready(what, probe, timeout, log=log)


def wait_http(lay: Layout, name: str, timeout: float) -> None:
    port = BY_NAME[name].port or 0
    wait_for(lay, name, lambda: http_answers(port), timeout, lay.logfile(name))


def stop_all(lay: Layout) -> None:
    sup = lay.supervisor
    # The OpenStack services go first and completely, so none of them is left writing to a
    # database that is shutting down.
    sup.stop(SERVICE_NAMES, KILL_GRACE_S)
    sup.stop(INFRASTRUCTURE, DB_STOP_GRACE_S)
    sup.reap()


def kill(lay: Layout, name: str) -> bool:
    """SIGKILL one service, as a crash would; ``start`` brings it back."""
    return lay.supervisor.kill(name)


def status_rows(lay: Layout) -> tuple[list[str], bool]:
    """One line per process, and whether all of them run (and answer, if they serve HTTP)."""
    healthy = True
    rows = []
    for proc in PROCESSES:
        pid = running(lay, proc.name)
        state = "running" if pid else "stopped"
        if pid and proc.http and proc.port is not None and not http_answers(proc.port):
            state = "not answering"
        healthy = healthy and state == "running"
        rows.append(f"  {proc.name:15} {state:14} {pid or ''}")
    return rows, healthy
