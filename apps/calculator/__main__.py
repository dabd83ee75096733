"""Command line: ``python3 -m calculator <role>`` runs one role; ``all`` runs the five together."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Mapping
from dataclasses import replace
from types import FrameType

from calculator import config
from calculator.config import SERVICES, ConfigError, Settings
from calculator.front import FrontEnd
from calculator.httpbase import Application, CalcServer, serve
from calculator.service import OperationService

USAGE = f"usage: python3 -m calculator {{{','.join((*config.ROLES, 'all'))}}}"


def _application(settings: Settings) -> Application:
    if settings.role == "front":
        return FrontEnd(settings)
    return OperationService(settings.role, settings.limits)


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    # As PID 1 in a container, a signal without a handler is ignored; exiting cleanly here
    # makes `docker stop` quick and lets serve_forever's caller close the socket.
    raise SystemExit(0)


def _run_all(settings: Settings, env: Mapping[str, str]) -> None:
    """Every role in this process on consecutive ports from CALC_PORT (0: any free ports)."""
    servers: list[CalcServer] = []
    urls: dict[str, str] = {}
    for offset, name in enumerate(SERVICES, start=1):
        port = settings.port + offset if settings.port else 0
        role_settings = replace(config.load(name, env), host=settings.host, port=port)
        server = CalcServer(role_settings, _application(role_settings))
        servers.append(server)
        urls[name] = f"http://{_url_host(settings.host)}:{server.server_address[1]}"
    front_settings = replace(
        config.load("front", env), host=settings.host, port=settings.port, service_urls=urls
    )
    servers.append(CalcServer(front_settings, _application(front_settings)))
    threads = [threading.Thread(target=serve, args=(server,), daemon=True) for server in servers]
    for thread in threads:
        thread.start()
    try:
        threading.Event().wait()
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", ""):  # noqa: S104 -- a wildcard is not an address to connect to
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print(USAGE, file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    role = argv[0]
    try:
        settings = config.load(role, os.environ)
    except ConfigError as error:
        print(f"calculator: {error}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        if role == "all":
            _run_all(settings, os.environ)
        else:
            try:
                server = CalcServer(settings, _application(settings))
            except OSError as error:
                print(
                    f"calculator: cannot listen on {settings.host}:{settings.port}: {error}",
                    file=sys.stderr,
                )
                return 1
            try:
                serve(server)
            finally:
                server.server_close()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
