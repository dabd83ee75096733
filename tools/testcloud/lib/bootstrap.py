"""From empty databases to a cloud that can place a server: MariaDB's data directory, the
databases and their user, every service's schema migrations, Keystone's bootstrap, and
waiting until the compute host is mapped and reporting. Each step runs once (a marker under
``state/done`` records it, keyed by the constraints file) and again after a reinstall."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import time
from pathlib import Path

from . import processes
from .configs import Passwords, db_url
from .core import (
    CONSTRAINTS,
    HOST,
    KEYSTONE_PORT,
    REGION,
    Layout,
    TestcloudError,
    file_digest,
    run_logged,
    say,
)

DATABASES = ("keystone", "glance", "neutron", "nova_api", "nova", "nova_cell0", "placement")
# Host mapped to cell1, last check-in time of its nova-compute, and its inventory rows in
# placement: together they mean the scheduler can place a server there. The host is
# core.COMPUTE_HOST, written out: the statement stays a constant.
COMPUTE_READY_SQL = """
SELECT COUNT(*) FROM nova_api.host_mappings WHERE host = 'testcloud-compute';
SELECT COALESCE(MAX(UNIX_TIMESTAMP(COALESCE(updated_at, created_at))), 0) FROM nova.services
  WHERE `binary` = 'nova-compute' AND host = 'testcloud-compute' AND deleted = 0;
SELECT COUNT(*) FROM placement.inventories i JOIN placement.resource_providers r
  ON i.resource_provider_id = r.id WHERE r.name = 'testcloud-compute';
"""
COMPUTE_READY_TIMEOUT_S = 180
# The scheduler's periodic discovery should map the host; after this long, once every
# DISCOVER_EVERY_S, we do it by hand in case its timer has not fired.
DISCOVER_AFTER_S = 20
DISCOVER_EVERY_S = 30


# --------------------------------------------------------------------------- MariaDB


def sql(lay: Layout, statement: str) -> str:
    result = subprocess.run(
        [
            "mariadb",
            "--no-defaults",
            f"--socket={lay.db_socket}",
            "-uroot",
            "-N",
            "-B",
            "-e",
            statement,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise TestcloudError(f"SQL failed: {statement[:80]}: {result.stderr.strip()}")
    return result.stdout


def db_ready(lay: Layout) -> bool:
    try:
        sql(lay, "SELECT 1")
    except TestcloudError:
        return False
    return True


def start_mariadb(lay: Layout, pw: Passwords) -> None:
    """MariaDB running, with our databases and the ``openstack`` user that owns them."""
    datadir = lay.state / "mysql"
    if processes.running(lay, "mariadb") is None and not (datadir / "mysql").exists():
        shutil.rmtree(datadir, ignore_errors=True)
        # Fresh databases mean every bootstrap step must run again.
        shutil.rmtree(lay.done, ignore_errors=True)
        run_logged(
            [
                "mariadb-install-db",
                "--no-defaults",
                f"--datadir={datadir}",
                "--user=root",
                "--skip-test-db",
                "--auth-root-authentication-method=socket",
            ],
            lay.logfile("mariadb-install"),
        )
    processes.start(lay, "mariadb")
    processes.wait_for(lay, "MariaDB", lambda: db_ready(lay), 60, lay.logfile("mariadb"))
    existing = set(sql(lay, "SHOW DATABASES").split())
    statements = [f"CREATE DATABASE {name}" for name in DATABASES if name not in existing]
    for host in ("127.0.0.1", "localhost"):
        statements.append(f"CREATE USER IF NOT EXISTS 'openstack'@'{host}'")
        statements.append(f"ALTER USER 'openstack'@'{host}' IDENTIFIED BY '{pw['db']}'")
        statements.extend(f"GRANT ALL ON {name}.* TO 'openstack'@'{host}'" for name in DATABASES)
    sql(lay, "; ".join(statements))


# --------------------------------------------------------------------------- once-only steps


def done_marker(lay: Layout, step: str) -> Path:
    return lay.done / step


def step_needed(lay: Layout, step: str) -> bool:
    marker = done_marker(lay, step)
    return not marker.exists() or marker.read_text() != file_digest(CONSTRAINTS)


def mark_done(lay: Layout, step: str) -> None:
    lay.done.mkdir(parents=True, exist_ok=True)
    done_marker(lay, step).write_text(file_digest(CONSTRAINTS))


def q(*parts: str | Path) -> str:
    """One shell command line from its arguments, each quoted."""
    return " ".join(shlex.quote(str(part)) for part in parts)


def migrations(lay: Layout, pw: Passwords) -> dict[str, list[str]]:
    """Per service, the shell commands that bring its database to the current schema."""
    b = lay.bin
    etc = lay.etc
    ks = ("--config-file", etc / "keystone/keystone.conf")
    nova = ("--config-file", etc / "nova/nova.conf")
    owner = ("--keystone-user", "root", "--keystone-group", "root")
    url = f"http://{HOST}:{KEYSTONE_PORT}/v3/"
    return {
        "keystone": [
            q(b / "keystone-manage", *ks, "db_sync"),
            q(b / "keystone-manage", *ks, "fernet_setup", *owner),
            q(b / "keystone-manage", *ks, "credential_setup", *owner),
            q(
                b / "keystone-manage",
                *ks,
                "bootstrap",
                "--bootstrap-admin-url",
                url,
                "--bootstrap-internal-url",
                url,
                "--bootstrap-public-url",
                url,
                "--bootstrap-region-id",
                REGION,
            ),
        ],
        "placement": [
            q(
                b / "placement-manage",
                "--config-file",
                etc / "placement/placement.conf",
                "db",
                "sync",
            ),
        ],
        "glance": [
            q(b / "glance-manage", "--config-file", etc / "glance/glance-api.conf", "db_sync"),
        ],
        "neutron": [
            q(
                b / "neutron-db-manage",
                "--config-file",
                etc / "neutron/neutron.conf",
                "--config-file",
                etc / "neutron/plugins/ml2/ml2_conf.ini",
                "upgrade",
                "heads",
            ),
        ],
        "nova": [
            q(b / "nova-manage", *nova, "api_db", "sync"),
            q(
                b / "nova-manage",
                *nova,
                "cell_v2",
                "map_cell0",
                "--database_connection",
                db_url(pw, "nova_cell0"),
            ),
            q(b / "nova-manage", *nova, "db", "sync"),
            # Exit code 2 means cell1 exists already, which is what we want.
            "{ "
            + q(b / "nova-manage", *nova, "cell_v2", "create_cell", "--name", "cell1")
            + " || [ $? -eq 2 ]; }",
        ],
    }


def migrate_databases(lay: Layout, pw: Passwords) -> None:
    """Run every missing schema migration, the services side by side to save wall time."""
    chains = migrations(lay, pw)
    pending = {name: cmds for name, cmds in chains.items() if step_needed(lay, f"db-{name}")}
    if not pending:
        return
    say(f"migrating databases: {', '.join(pending)}")
    scripts: dict[str, subprocess.Popen[bytes]] = {}
    for name, cmds in pending.items():
        log = lay.logfile(f"bootstrap-{name}")
        script = " && ".join(cmds)
        with log.open("ab") as out:
            scripts[name] = subprocess.Popen(
                ["nice", "sh", "-ec", script],
                stdout=out,
                stderr=subprocess.STDOUT,
                # keystone-manage bootstrap reads it from here, keeping it off the command line.
                env=lay.daemon_env({"OS_BOOTSTRAP_PASSWORD": pw["admin"]}),
            )
    failed = []
    for name, proc in scripts.items():
        if proc.wait() == 0:
            mark_done(lay, f"db-{name}")
        else:
            failed.append(name)
    if failed:
        raise TestcloudError(
            "database bootstrap failed for "
            + ", ".join(f"{n} (see {lay.logfile('bootstrap-' + n)})" for n in failed)
        )


# --------------------------------------------------------------------------- compute host


def compute_started_file(lay: Layout) -> Path:
    return lay.run / "nova-compute.started"


def note_compute_started(lay: Layout) -> None:
    compute_started_file(lay).write_text(str(time.time()))


def compute_ready(lay: Layout) -> bool:
    """The compute host is mapped, reports inventory, and has checked in since it started."""
    try:
        started = float(compute_started_file(lay).read_text())
    except (OSError, ValueError):
        return False
    if processes.running(lay, "nova-compute") is None:
        raise TestcloudError(f"nova-compute died; see {lay.logfile('nova-compute')}")
    out = sql(lay, COMPUTE_READY_SQL).split()
    mapped, checked_in, inventories = int(out[0]), float(out[1]), int(out[2])
    # Nova stores UTC and mariadbd runs with a UTC time zone, so UNIX_TIMESTAMP is exact;
    # the second of slack covers the whole-second resolution of updated_at.
    return mapped > 0 and inventories > 0 and checked_in >= started - 1


def wait_for_compute_host(lay: Layout) -> None:
    deadline = time.monotonic() + COMPUTE_READY_TIMEOUT_S
    next_discover = time.monotonic() + DISCOVER_AFTER_S
    while not compute_ready(lay):
        now = time.monotonic()
        if now > deadline:
            raise TestcloudError(
                f"compute host not ready after {COMPUTE_READY_TIMEOUT_S} s; "
                f"see {lay.logfile('nova-compute')}"
            )
        if now > next_discover:
            run_logged(
                [
                    lay.bin / "nova-manage",
                    "--config-file",
                    lay.etc / "nova/nova.conf",
                    "cell_v2",
                    "discover_hosts",
                ],
                lay.logfile("bootstrap-nova"),
                lay.daemon_env(),
            )
            next_discover = now + DISCOVER_EVERY_S
        time.sleep(1)
