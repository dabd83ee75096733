"""testcloud: a throwaway OpenStack control plane on 127.0.0.1 for tests and demos.

Installs MariaDB and RabbitMQ from Debian and Keystone, Placement, Glance, Neutron (ML2 with
no agents, ports bound by our own mechanism driver) and Nova (fake compute driver) into a
virtualenv, then starts, bootstraps, seeds and stops them. Everything it owns (virtualenv,
configuration, databases, logs, credentials) lives under
``${CALCLAB_CACHE:-$HOME/.cache/calculator-lab}/testcloud``; nothing is written to /etc.

Runs on the system Python with the standard library only, because it has to work before the
virtualenv exists; the steps that talk to the OpenStack APIs run ``cloudops.py`` inside it.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONSTRAINTS = HERE / "constraints-2026.1.txt"
DRIVER_SRC = HERE / "calclab_ml2"
CLOUDOPS = HERE / "cloudops.py"

APT_PACKAGES = ("mariadb-server", "rabbitmq-server", "python3-venv")
PIP_PACKAGES = (
    "keystone",
    "neutron",
    "nova",
    "openstack-placement",
    "glance",
    "python-openstackclient",
    "osc-placement",
    "openstacksdk",
    "PyMySQL",
    "pyuwsgi",
)

HOST = "127.0.0.1"
# MariaDB and RabbitMQ listen on ports of their own so that a system instance started by a
# package's postinst (on machines without a policy-rc.d) cannot collide with ours.
DB_PORT = 13306
AMQP_PORT = 5682
AMQP_DIST_PORT = 25682
RABBIT_NODE = "testcloud@localhost"
COMPUTE_HOST = "testcloud-compute"
# Host mapped to cell1, last check-in time of its nova-compute, and its inventory rows in
# placement: together they mean the scheduler can place a server there.
COMPUTE_READY_SQL = """
SELECT COUNT(*) FROM nova_api.host_mappings WHERE host = 'testcloud-compute';
SELECT COALESCE(MAX(UNIX_TIMESTAMP(COALESCE(updated_at, created_at))), 0) FROM nova.services
  WHERE `binary` = 'nova-compute' AND host = 'testcloud-compute' AND deleted = 0;
SELECT COUNT(*) FROM placement.inventories i JOIN placement.resource_providers r
  ON i.resource_provider_id = r.id WHERE r.name = 'testcloud-compute';
"""
REGION = "RegionOne"
DATABASES = ("keystone", "glance", "neutron", "nova_api", "nova", "nova_cell0", "placement")

# Every daemon we start carries this variable; ``stop`` finds stragglers (uwsgi children,
# epmd, Erlang helpers) by it, so nothing we launched survives and nothing else is touched.
OWNER_VAR = "CALCLAB_TESTCLOUD_OWNER"

# SIGTERM is enough for the web servers, but nova's conductor, scheduler and compute ignore
# it for over a minute; after this grace they get SIGKILL.
KILL_GRACE_S = 3.0
DB_STOP_GRACE_S = 30.0


@dataclass(frozen=True)
class WebService:
    """A WSGI application served by pyuwsgi on one loopback port."""

    name: str
    port: int
    module: str
    config_env: str


WEB_SERVICES = (
    WebService("keystone", 5000, "keystone.wsgi.api:application", "OS_KEYSTONE_CONFIG_DIR"),
    WebService("placement", 8778, "placement.wsgi.api:application", "OS_PLACEMENT_CONFIG_DIR"),
    WebService("glance", 9292, "glance.wsgi.api:application", "OS_GLANCE_CONFIG_DIR"),
    WebService("neutron", 9696, "neutron.wsgi.api:application", "OS_NEUTRON_CONFIG_DIR"),
    WebService("nova-api", 8774, "nova.wsgi.osapi_compute:application", "OS_NOVA_CONFIG_DIR"),
)
NOVA_DAEMONS = ("nova-conductor", "nova-scheduler", "nova-compute")


class TestcloudError(RuntimeError):
    """A step failed; the message says which and where its log is."""


def cache_root() -> Path:
    base = os.environ.get("CALCLAB_CACHE") or str(Path.home() / ".cache" / "calculator-lab")
    return Path(base) / "testcloud"


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

    def pidfile(self, name: str) -> Path:
        return self.run / f"{name}.pid"

    def logfile(self, name: str) -> Path:
        return self.log / f"{name}.log"


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


# --------------------------------------------------------------------------- install


def apt_missing() -> list[str]:
    wanted = {
        "mariadb-server": Path("/usr/sbin/mariadbd"),
        "rabbitmq-server": Path("/usr/lib/rabbitmq/bin/rabbitmq-server"),
    }
    missing = [pkg for pkg, probe in wanted.items() if not probe.exists()]
    venv_ok = subprocess.run(
        ["/usr/bin/python3", "-c", "import ensurepip, venv"], capture_output=True, check=False
    )
    if venv_ok.returncode != 0:
        missing.append("python3-venv")
    return missing


def install(lay: Layout) -> None:
    missing = apt_missing()
    if missing:
        if os.geteuid() != 0:
            raise TestcloudError(f"need root to apt-get install {' '.join(missing)}")
        say(f"apt-get install {' '.join(APT_PACKAGES)}")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        run_logged(["apt-get", "update", "-qq"], lay.logfile("install"), env)
        run_logged(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *APT_PACKAGES],
            lay.logfile("install"),
            env,
        )

    stamp = lay.venv / ".calclab-stamp"
    wanted = file_digest(CONSTRAINTS) + "|" + ",".join(PIP_PACKAGES)
    if not stamp.exists() or stamp.read_text() != wanted:
        say("installing OpenStack into the virtualenv (about a minute and a half when cold)")
        if not (lay.bin / "python").exists():
            run_logged(["/usr/bin/python3", "-m", "venv", lay.venv], lay.logfile("install"))
        pip_env = dict(os.environ, PIP_CACHE_DIR=str(lay.root / "pip-cache"))
        run_logged(
            [
                "nice",
                lay.bin / "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                "-c",
                CONSTRAINTS,
                *PIP_PACKAGES,
            ],
            lay.logfile("install"),
            pip_env,
        )
        stamp.write_text(wanted)

    driver_stamp = lay.venv / ".calclab-ml2-stamp"
    driver_digest = file_digest(DRIVER_SRC)
    if not driver_stamp.exists() or driver_stamp.read_text() != driver_digest:
        say("installing the calclab_ml2 mechanism driver")
        # Build from a scratch copy: setuptools writes build/ and *.egg-info next to the
        # sources, and the checkout must stay clean.
        scratch = lay.root / "build" / "calclab_ml2"
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.copytree(DRIVER_SRC, scratch, ignore=shutil.ignore_patterns("__pycache__"))
        run_logged(
            [
                lay.bin / "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                "--force-reinstall",
                "--no-deps",
                scratch,
            ],
            lay.logfile("install"),
        )
        driver_stamp.write_text(driver_digest)


# --------------------------------------------------------------------------- secrets, configs


def load_secrets(lay: Layout) -> dict[str, str]:
    lay.state.mkdir(parents=True, exist_ok=True)
    if lay.secrets_file.exists():
        data: dict[str, str] = json.loads(lay.secrets_file.read_text())
    else:
        data = {}
    names = ("db", "admin", "service", "student")
    if any(n not in data for n in names):
        for name in names:
            data.setdefault(name, secrets.token_urlsafe(18))
        tmp = lay.secrets_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        tmp.chmod(0o600)
        tmp.replace(lay.secrets_file)
    return data


def db_url(pw: dict[str, str], name: str) -> str:
    return f"mysql+pymysql://openstack:{pw['db']}@{HOST}:{DB_PORT}/{name}?charset=utf8"


def amqp_url() -> str:
    return f"rabbit://guest:guest@{HOST}:{AMQP_PORT}/"


def auth_section(pw: dict[str, str], user: str, section: str = "keystone_authtoken") -> str:
    extra = (
        f"www_authenticate_uri = http://{HOST}:5000/\nservice_token_roles_required = true\n"
        if section == "keystone_authtoken"
        else ""
    )
    return f"""[{section}]
{extra}auth_url = http://{HOST}:5000/
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = {user}
password = {pw["service"]}
region_name = {REGION}
"""


def write_configs(lay: Layout, pw: dict[str, str]) -> None:
    """(Re)write every configuration file; cheap, and keeps them in step with this script."""
    st = lay.state
    files: dict[str, str] = {}
    files["keystone/keystone.conf"] = f"""[DEFAULT]
log_file = {lay.logfile("keystone-app")}
[database]
connection = {db_url(pw, "keystone")}
[token]
provider = fernet
[fernet_tokens]
key_repository = {st}/keystone/fernet-keys
[credential]
key_repository = {st}/keystone/credential-keys
"""
    files["placement/placement.conf"] = f"""[DEFAULT]
log_file = {lay.logfile("placement-app")}
[placement_database]
connection = {db_url(pw, "placement")}
[api]
auth_strategy = keystone
{auth_section(pw, "placement")}"""
    files["glance/glance-api.conf"] = f"""[DEFAULT]
log_file = {lay.logfile("glance-app")}
enabled_backends = file:file
[database]
connection = {db_url(pw, "glance")}
[glance_store]
default_backend = file
[file]
filesystem_store_datadir = {st}/glance/images
[os_glance_staging_store]
filesystem_store_datadir = {st}/glance/staging
[os_glance_tasks_store]
filesystem_store_datadir = {st}/glance/tasks
[paste_deploy]
flavor = keystone
[oslo_concurrency]
lock_path = {st}/glance/locks
{auth_section(pw, "glance")}"""
    files["neutron/neutron.conf"] = f"""[DEFAULT]
log_file = {lay.logfile("neutron-app")}
core_plugin = ml2
service_plugins = router
auth_strategy = keystone
transport_url = {amqp_url()}
state_path = {st}/neutron
api_paste_config = {lay.etc}/neutron/api-paste.ini
dhcp_agent_notification = false
notify_nova_on_port_status_changes = true
notify_nova_on_port_data_changes = true
[database]
connection = {db_url(pw, "neutron")}
[oslo_concurrency]
lock_path = {st}/neutron/locks
{auth_section(pw, "neutron")}
{auth_section(pw, "nova", "nova")}"""
    files["neutron/plugins/ml2/ml2_conf.ini"] = """[ml2]
type_drivers = flat,vxlan
tenant_network_types = vxlan
mechanism_drivers = calclab_loopback
extension_drivers = port_security
[ml2_type_flat]
flat_networks = public
[ml2_type_vxlan]
vni_ranges = 1:10000
"""
    nova_common = f"""transport_url = {amqp_url()}
state_path = {st}/nova
my_ip = {HOST}
allow_resize_to_same_host = true
[oslo_concurrency]
lock_path = {st}/nova/locks
[vnc]
enabled = false
[glance]
region_name = {REGION}
{auth_section(pw, "nova")}
{auth_section(pw, "placement", "placement")}
{auth_section(pw, "neutron", "neutron")}
{auth_section(pw, "nova", "service_user")}send_service_user_token = true
"""
    files["nova/nova.conf"] = f"""[DEFAULT]
{nova_common}[api_database]
connection = {db_url(pw, "nova_api")}
[database]
connection = {db_url(pw, "nova")}
[conductor]
workers = 1
[scheduler]
workers = 1
discover_hosts_in_cells_interval = 5
[wsgi]
api_paste_config = {lay.etc}/nova/api-paste.ini
"""
    # nova-compute must not see database credentials: it reaches the database only through
    # the conductor, and refuses to start if it could go direct.
    files["nova-compute/nova.conf"] = f"""[DEFAULT]
host = {COMPUTE_HOST}
compute_driver = fake.FakeDriverWithoutFakeNodes
{nova_common}"""

    for rel, text in files.items():
        path = lay.etc / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            path.chmod(0o600)
    # The paste pipelines ship in the venv's etc/; services look for them beside their conf.
    for service, name in (
        ("neutron", "api-paste.ini"),
        ("nova", "api-paste.ini"),
        ("glance", "glance-api-paste.ini"),
    ):
        shutil.copyfile(lay.venv / "etc" / service / name, lay.etc / service / name)
    for sub in ("glance/images", "glance/staging", "glance/tasks", "glance/locks"):
        (st / sub).mkdir(parents=True, exist_ok=True)
    for sub in ("neutron/locks", "nova/locks", "nova/instances"):
        (st / sub).mkdir(parents=True, exist_ok=True)

    rabbit_etc = lay.etc / "rabbitmq"
    rabbit_etc.mkdir(parents=True, exist_ok=True)
    (rabbit_etc / "rabbitmq.conf").write_text("loopback_users.guest = true\n")
    (rabbit_etc / "enabled_plugins").write_text("[].\n")
    (rabbit_etc / "rabbitmq-env.conf").write_text("")


# --------------------------------------------------------------------------- processes


def daemon_env(lay: Layout, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {
        "PATH": f"{lay.bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(lay.state),
        "LANG": "C.UTF-8",
        OWNER_VAR: str(lay.root),
    }
    env.update(extra or {})
    return env


def owned_pids(lay: Layout) -> list[int]:
    """Every live process we started, and all their descendants.

    The owner marker in the environment finds most of them, but setproctitle (nova's
    scheduler master) overwrites the memory /proc/PID/environ shows, so a process named
    in one of our pidfiles whose command line points into our tree counts too, and so do
    the children of any owned process.
    """
    needle = f"{OWNER_VAR}={lay.root}".encode()
    parents: dict[int, int] = {}
    owned: set[int] = set()
    cmdlines: dict[int, bytes] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            stat = (entry / "stat").read_text()
            environ = (entry / "environ").read_bytes()
            cmdlines[pid] = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        # The command name in stat may hold spaces and parentheses; the ppid follows the
        # last closing parenthesis.
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] == "Z":
            # Exited; waits only for pid 1 to reap it.
            continue
        parents[pid] = int(fields[1])
        if needle in environ.split(b"\0"):
            owned.add(pid)
    if lay.run.is_dir():
        for pidfile in lay.run.glob("*.pid"):
            with contextlib.suppress(OSError, ValueError):
                pid = int(pidfile.read_text().strip())
                if str(lay.root).encode() in cmdlines.get(pid, b""):
                    owned.add(pid)
    grew = True
    while grew:
        children = {pid for pid, ppid in parents.items() if ppid in owned} - owned
        owned |= children
        grew = bool(children)
    owned.discard(os.getpid())
    return sorted(owned)


def pid_alive(lay: Layout, name: str) -> int | None:
    try:
        pid = int(lay.pidfile(name).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid in owned_pids(lay) else None


def spawn(lay: Layout, name: str, cmd: Sequence[str | Path], env: dict[str, str]) -> int:
    lay.run.mkdir(parents=True, exist_ok=True)
    lay.log.mkdir(parents=True, exist_ok=True)
    with lay.logfile(name).open("ab") as out:
        proc = subprocess.Popen(
            [str(c) for c in cmd],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=lay.state,
            start_new_session=True,
        )
    lay.pidfile(name).write_text(str(proc.pid))
    return proc.pid


def wait_for(what: str, probe_ok: object, timeout: float, log: Path | None = None) -> None:
    assert callable(probe_ok)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe_ok():
            return
        time.sleep(0.5)
    where = f"; see {log}" if log else ""
    raise TestcloudError(f"{what} not ready after {timeout:.0f} s{where}")


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


def start_mariadb(lay: Layout, pw: dict[str, str]) -> None:
    datadir = lay.state / "mysql"
    if pid_alive(lay, "mariadb") is None:
        require_free(DB_PORT, "mariadb")
        if not (datadir / "mysql").exists():
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
        spawn(
            lay,
            "mariadb",
            [
                "/usr/sbin/mariadbd",
                "--no-defaults",
                f"--datadir={datadir}",
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
                # Durability is worthless for a disposable test cloud; speed of the
                # schema migrations is not.
                "--innodb-flush-log-at-trx-commit=0",
                "--innodb-doublewrite=0",
                "--sync-binlog=0",
            ],
            daemon_env(lay),
        )
    wait_for("MariaDB", lambda: db_ready(lay), 60, lay.logfile("mariadb"))
    existing = set(sql(lay, "SHOW DATABASES").split())
    statements = [f"CREATE DATABASE {name}" for name in DATABASES if name not in existing]
    for host in ("127.0.0.1", "localhost"):
        statements.append(f"CREATE USER IF NOT EXISTS 'openstack'@'{host}'")
        statements.append(f"ALTER USER 'openstack'@'{host}' IDENTIFIED BY '{pw['db']}'")
        statements.extend(f"GRANT ALL ON {name}.* TO 'openstack'@'{host}'" for name in DATABASES)
    sql(lay, "; ".join(statements))


# --------------------------------------------------------------------------- RabbitMQ


def rabbit_env(lay: Layout) -> dict[str, str]:
    return daemon_env(
        lay,
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
        },
    )


def start_rabbitmq(lay: Layout) -> None:
    if pid_alive(lay, "rabbitmq") is not None and port_open(AMQP_PORT):
        return
    (lay.state / "rabbitmq").mkdir(parents=True, exist_ok=True)
    (lay.log / "rabbitmq").mkdir(parents=True, exist_ok=True)
    if pid_alive(lay, "rabbitmq") is None:
        require_free(AMQP_PORT, "rabbitmq")
        spawn(lay, "rabbitmq", ["/usr/lib/rabbitmq/bin/rabbitmq-server"], rabbit_env(lay))


def wait_rabbitmq(lay: Layout) -> None:
    wait_for("RabbitMQ", lambda: port_open(AMQP_PORT), 90, lay.logfile("rabbitmq"))


# --------------------------------------------------------------------------- bootstrap


def done_marker(lay: Layout, step: str) -> Path:
    return lay.done / step


def step_needed(lay: Layout, step: str) -> bool:
    marker = done_marker(lay, step)
    return not marker.exists() or marker.read_text() != file_digest(CONSTRAINTS)


def mark_done(lay: Layout, step: str) -> None:
    lay.done.mkdir(parents=True, exist_ok=True)
    done_marker(lay, step).write_text(file_digest(CONSTRAINTS))


def bootstrap_databases(lay: Layout, pw: dict[str, str]) -> None:
    """Run every missing schema migration, the services side by side to save wall time."""
    b = lay.bin
    etc = lay.etc
    ks = ("--config-file", etc / "keystone/keystone.conf")
    nova = ("--config-file", etc / "nova/nova.conf")
    owner = ("--keystone-user", "root", "--keystone-group", "root")
    url = f"http://{HOST}:5000/v3/"
    chains: dict[str, list[str]] = {
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
                env=daemon_env(lay, {"OS_BOOTSTRAP_PASSWORD": pw["admin"]}),
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


def q(*parts: str | Path) -> str:
    """One shell command line from its arguments, each quoted."""
    return " ".join(shlex.quote(str(part)) for part in parts)


def cloudops(lay: Layout, *args: str) -> None:
    """Run one API-level step of cloudops.py inside the virtualenv, where openstacksdk is."""
    env = dict(os.environ, OS_CLIENT_CONFIG_FILE=str(lay.clouds_yaml))
    env.pop("OS_CLOUD", None)
    result = subprocess.run(
        [str(lay.bin / "python"), str(CLOUDOPS), str(lay.root), *args], env=env, check=False
    )
    if result.returncode != 0:
        raise TestcloudError(f"cloudops {' '.join(args)} failed (exit {result.returncode})")


def write_client_files(lay: Layout, pw: dict[str, str]) -> None:
    auth = f"http://{HOST}:5000/v3"

    def cloud(name: str, user: str, password: str, project: str) -> str:
        return f"""  {name}:
    auth:
      auth_url: {auth}
      username: {user}
      password: "{password}"
      project_name: {project}
      user_domain_name: Default
      project_domain_name: Default
    region_name: {REGION}
    interface: public
    identity_api_version: 3
"""

    text = "clouds:\n" + cloud("testcloud", "student", pw["student"], "calculator-lab")
    text += cloud("testcloud-admin", "admin", pw["admin"], "admin")
    lay.clouds_yaml.write_text(text)
    lay.clouds_yaml.chmod(0o600)
    for suffix, user, password, project in (
        ("", "student", pw["student"], "calculator-lab"),
        ("-admin", "admin", pw["admin"], "admin"),
    ):
        rc = lay.root / f"openrc{suffix}"
        rc.write_text(
            f"export OS_AUTH_URL={auth}\nexport OS_USERNAME={user}\n"
            f"export OS_PASSWORD='{password}'\nexport OS_PROJECT_NAME={project}\n"
            "export OS_USER_DOMAIN_NAME=Default\nexport OS_PROJECT_DOMAIN_NAME=Default\n"
            f"export OS_REGION_NAME={REGION}\nexport OS_IDENTITY_API_VERSION=3\n"
            "export OS_INTERFACE=public\n"
        )
        rc.chmod(0o600)


def require_free(port: int, name: str) -> None:
    """A foreign listener would answer our readiness probes and hide a failed start."""
    if port_open(port):
        raise TestcloudError(f"port {HOST}:{port} for {name} is taken by another process")


def start_web(lay: Layout, svc: WebService) -> None:
    if pid_alive(lay, svc.name) is not None:
        return
    require_free(svc.port, svc.name)
    config_dir = lay.etc / ("nova" if svc.name == "nova-api" else svc.name)
    spawn(
        lay,
        svc.name,
        [
            lay.bin / "uwsgi",
            "--http-socket",
            f"{HOST}:{svc.port}",
            "--module",
            svc.module,
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
        ],
        daemon_env(lay, {svc.config_env: str(config_dir)}),
    )


def start_nova_daemon(lay: Layout, name: str) -> None:
    if pid_alive(lay, name) is not None:
        return
    conf = lay.etc / ("nova-compute" if name == "nova-compute" else "nova") / "nova.conf"
    spawn(lay, name, [lay.bin / name, "--config-file", conf], daemon_env(lay))
    if name == "nova-compute":
        (lay.run / "nova-compute.started").write_text(str(time.time()))


def compute_ready(lay: Layout) -> bool:
    """The compute host is mapped, reports inventory, and has checked in since it started."""
    try:
        started = float((lay.run / "nova-compute.started").read_text())
    except (OSError, ValueError):
        return False
    if pid_alive(lay, "nova-compute") is None:
        raise TestcloudError(f"nova-compute died; see {lay.logfile('nova-compute')}")
    out = sql(lay, COMPUTE_READY_SQL).split()
    mapped, checked_in, inventories = int(out[0]), float(out[1]), int(out[2])
    # Nova stores UTC and mariadbd runs with a UTC time zone, so UNIX_TIMESTAMP is exact;
    # the second of slack covers the whole-second resolution of updated_at.
    return mapped > 0 and inventories > 0 and checked_in >= started - 1


def start(lay: Layout) -> None:
    t0 = time.monotonic()
    install(lay)
    pw = load_secrets(lay)
    write_configs(lay, pw)
    write_client_files(lay, pw)
    start_rabbitmq(lay)
    start_mariadb(lay, pw)
    bootstrap_databases(lay, pw)
    say("databases ready")
    start_web(lay, WEB_SERVICES[0])
    if not step_needed(lay, "catalog"):
        # The service users exist already, so nothing need wait for Keystone: loading
        # all the applications at once is most of a warm start.
        for svc in WEB_SERVICES[1:]:
            start_web(lay, svc)
    wait_for("Keystone", lambda: http_answers(5000), 90, lay.logfile("keystone"))
    if step_needed(lay, "catalog"):
        say("creating the service catalog, service users and the student project")
        cloudops(lay, "catalog")
        mark_done(lay, "catalog")
    wait_rabbitmq(lay)
    for svc in WEB_SERVICES[1:]:
        start_web(lay, svc)
    for name in NOVA_DAEMONS:
        start_nova_daemon(lay, name)
    for svc in WEB_SERVICES[1:]:
        wait_for(svc.name, lambda s=svc: http_answers(s.port), 120, lay.logfile(svc.name))
    say("APIs answering; waiting for the compute host")
    discover_deadline = time.monotonic() + 180
    next_discover = time.monotonic() + 20
    while not compute_ready(lay):
        now = time.monotonic()
        if now > discover_deadline:
            raise TestcloudError(
                f"compute host not ready after 180 s; see {lay.logfile('nova-compute')}"
            )
        if now > next_discover:
            # The scheduler's periodic discovery should have mapped the host by now;
            # do it by hand once in case its timer has not fired.
            run_logged(
                [
                    lay.bin / "nova-manage",
                    "--config-file",
                    lay.etc / "nova/nova.conf",
                    "cell_v2",
                    "discover_hosts",
                ],
                lay.logfile("bootstrap-nova"),
                daemon_env(lay),
            )
            next_discover = now + 30
        time.sleep(1)
    say("compute host ready; seeding")
    cloudops(lay, "seed")
    say(f'ready in {time.monotonic() - t0:.0f} s; for clients: eval "$({HERE}/testcloud env)"')


# --------------------------------------------------------------------------- stop, status


def descendants(lay: Layout, roots: set[int]) -> set[int]:
    """``roots`` and every owned process below them."""
    family = set(roots)
    parents = _parents()
    grew = True
    while grew:
        children = {pid for pid, ppid in parents.items() if ppid in family} - family
        family |= children
        grew = bool(children)
    return family & set(owned_pids(lay))


def _parents() -> dict[int, int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def terminate(lay: Layout, names: Sequence[str], grace: float) -> None:
    """SIGTERM the named services and their children, SIGKILL whatever outlives ``grace``."""
    roots = {pid for name in names if (pid := pid_alive(lay, name)) is not None}
    family = descendants(lay, roots)
    for pid in family:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while family and time.monotonic() < deadline:
        time.sleep(0.2)
        family &= set(owned_pids(lay))
    for pid in family:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while family and time.monotonic() < deadline:
        time.sleep(0.1)
        family &= set(owned_pids(lay))
    for name in names:
        lay.pidfile(name).unlink(missing_ok=True)


SERVICE_NAMES = (*NOVA_DAEMONS, *(s.name for s in reversed(WEB_SERVICES)))


def stop(lay: Layout) -> None:
    t0 = time.monotonic()
    # The OpenStack services go first and completely, so none of them is left writing to a
    # database that is shutting down.
    terminate(lay, SERVICE_NAMES, KILL_GRACE_S)
    # MariaDB gets time for a clean shutdown: its databases make the next start quick.
    terminate(lay, ("rabbitmq", "mariadb"), DB_STOP_GRACE_S)
    leftovers = owned_pids(lay)
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while owned_pids(lay) and time.monotonic() < deadline:
        time.sleep(0.1)
    still = owned_pids(lay)
    if still:
        raise TestcloudError(f"processes survived SIGKILL: {still}")
    say(f"stopped in {time.monotonic() - t0:.1f} s; no process left")


def kill_service(lay: Layout, name: str) -> None:
    """SIGKILL one service, as a crash would; ``start`` brings it back."""
    roots = {pid for pid in [pid_alive(lay, name)] if pid is not None}
    for pid in descendants(lay, roots):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    lay.pidfile(name).unlink(missing_ok=True)
    say(f"killed {name}" if roots else f"{name} was not running")


def rss_total_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def status(lay: Layout) -> bool:
    healthy = True
    rows = []
    for name in ("mariadb", "rabbitmq", *(s.name for s in WEB_SERVICES), *NOVA_DAEMONS):
        pid = pid_alive(lay, name)
        state = "running" if pid else "stopped"
        port = next((s.port for s in WEB_SERVICES if s.name == name), None)
        if pid and port is not None and not http_answers(port):
            state = "not answering"
        healthy = healthy and state == "running"
        rows.append(f"  {name:15} {state:14} {pid or ''}")
    owned = owned_pids(lay)
    print("\n".join(rows))
    print(f"  processes: {len(owned)}, resident memory: {rss_total_kib(owned) // 1024} MiB")
    return healthy


def print_env(lay: Layout) -> None:
    print(f"export OS_CLIENT_CONFIG_FILE={lay.clouds_yaml}")
    print("export OS_CLOUD=testcloud")
    print(f"export CALCLAB_TESTCLOUD={lay.root}")


def reset(lay: Layout) -> None:
    cloudops(lay, "reset")


@contextlib.contextmanager
def lock(lay: Layout) -> Iterator[None]:
    """One testcloud command at a time per cache root."""
    import fcntl

    lay.root.mkdir(parents=True, exist_ok=True)
    with (lay.root / ".lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say("another testcloud command is running; waiting for it")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="testcloud", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("install", help="apt and pip install (quick when already done)")
    sub.add_parser("start", help="install, start, bootstrap, seed; idempotent")
    sub.add_parser("seed", help="re-create the seeded network, flavors, image and quotas")
    sub.add_parser("status", help="show processes; exit 1 unless everything is up")
    sub.add_parser("env", help="print shell exports for clients (eval them)")
    sub.add_parser("reset", help="delete everything in the student project")
    sub.add_parser("stop", help="stop every process, keeping the databases")
    kill = sub.add_parser("kill", help="SIGKILL one service (fault tests); start revives it")
    kill.add_argument("service", choices=[*SERVICE_NAMES, "rabbitmq", "mariadb"])
    args = parser.parse_args(argv)
    lay = Layout(cache_root())
    try:
        if args.command == "env":
            print_env(lay)
            return 0
        if args.command == "status":
            return 0 if status(lay) else 1
        with lock(lay):
            if args.command == "install":
                install(lay)
            elif args.command == "start":
                start(lay)
            elif args.command == "seed":
                cloudops(lay, "seed")
            elif args.command == "reset":
                reset(lay)
            elif args.command == "stop":
                stop(lay)
            elif args.command == "kill":
                kill_service(lay, args.service)
    except TestcloudError as err:
        print(f"testcloud: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
