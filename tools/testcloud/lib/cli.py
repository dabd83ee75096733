"""The ``testcloud`` command: install | start | seed | status | env | reset | kill | stop."""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import sys
import time
from collections.abc import Iterator, Sequence

from tools.procsup import procsup

from . import api, bootstrap, processes
from .configs import load_secrets, write_client_files, write_configs
from .core import AMQP_PORT, KEYSTONE_PORT, TOOL_DIR, Layout, TestcloudError, cache_root, say
from .install import install


def start(lay: Layout) -> None:
    t0 = time.monotonic()
    install(lay)
    pw = load_secrets(lay)
    write_configs(lay, pw)
    write_client_files(lay, pw)
    processes.start(lay, "rabbitmq")
    bootstrap.start_mariadb(lay, pw)
    bootstrap.migrate_databases(lay, pw)
    say("databases ready")
    processes.start(lay, "keystone")
    apis = [name for name in processes.WEB_SERVICES if name != "keystone"]
    if not bootstrap.step_needed(lay, "catalog"):
        # The service users exist already, so nothing need wait for Keystone: loading
        # all the applications at once is most of a warm start.
        for name in apis:
            processes.start(lay, name)
    processes.wait_for(
        lay,
        "Keystone",
        lambda: processes.http_answers(KEYSTONE_PORT),
        90,
        lay.logfile("keystone"),
    )
    if bootstrap.step_needed(lay, "catalog"):
        say("creating the service catalog, service users and the student project")
        api.run(lay, "catalog")
        bootstrap.mark_done(lay, "catalog")
    processes.wait_for(
        lay,
        "RabbitMQ",
        lambda: processes.port_open(AMQP_PORT),
        90,
        lay.logfile("rabbitmq"),
    )
    for name in apis:
        processes.start(lay, name)
    for name in processes.NOVA_DAEMONS:
        if processes.start(lay, name) and name == "nova-compute":
            bootstrap.note_compute_started(lay)
    for name in apis:
        processes.wait_http(lay, name, 120)
    say("APIs answering; waiting for the compute host")
    bootstrap.wait_for_compute_host(lay)
    say("compute host ready; seeding")
    api.run(lay, "seed")
    say(f'ready in {time.monotonic() - t0:.0f} s; for clients: eval "$({TOOL_DIR}/testcloud env)"')


def stop(lay: Layout) -> None:
    t0 = time.monotonic()
    processes.stop_all(lay)
    say(f"stopped in {time.monotonic() - t0:.1f} s; no process left")


def kill(lay: Layout, name: str) -> None:
    say(f"killed {name}" if processes.kill(lay, name) else f"{name} was not running")


def status(lay: Layout) -> bool:
    rows, healthy = processes.status_rows(lay)
    owned = lay.supervisor.owned()
    print("\n".join(rows))
    print(f"  processes: {len(owned)}, resident memory: {procsup.rss_total_kib(owned) // 1024} MiB")
    return healthy


def print_env(lay: Layout) -> None:
    print(f"export OS_CLIENT_CONFIG_FILE={lay.clouds_yaml}")
    print("export OS_CLOUD=testcloud")
    print(f"export CALCLAB_TESTCLOUD={lay.root}")
    # The clients (`openstack`), not the whole virtualenv: its python must not shadow the
    # caller's.
    print(f'export PATH={lay.client_bin}:"$PATH"')


@contextlib.contextmanager
def lock(lay: Layout) -> Iterator[None]:
    """One testcloud command at a time per cache root."""
    lay.root.mkdir(parents=True, exist_ok=True)
    with (lay.root / ".lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say("another testcloud command is running; waiting for it")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="testcloud",
        description="testcloud: a throwaway OpenStack control plane on 127.0.0.1 for tests "
        "and demos.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("install", help="apt and pip install (quick when already done)")
    sub.add_parser("start", help="install, start, bootstrap, seed; idempotent")
    sub.add_parser("seed", help="re-create the seeded network, flavors, image and quotas")
    sub.add_parser("status", help="show processes; exit 1 unless everything is up")
    sub.add_parser("env", help="print shell exports for clients (eval them)")
    sub.add_parser("reset", help="delete everything in the student project")
    sub.add_parser("stop", help="stop every process, keeping the databases")
    kill_cmd = sub.add_parser("kill", help="SIGKILL one service (fault tests); start revives it")
    kill_cmd.add_argument("service", choices=[*processes.SERVICE_NAMES, *processes.INFRASTRUCTURE])
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
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
            elif args.command in ("seed", "reset"):
                api.run(lay, args.command)
            elif args.command == "stop":
                stop(lay)
            elif args.command == "kill":
                kill(lay, args.service)
    except (TestcloudError, procsup.ProcsupError) as err:
        print(f"testcloud: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
