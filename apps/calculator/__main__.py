"""Command line: ``python3 -m calculator <role>`` runs one role; ``all`` runs the five together."""

from __future__ import annotations

import asyncio
import decimal
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import replace

from calculator import arith, config
from calculator.config import SERVICES, ConfigError, Settings
from calculator.front import FrontEnd
from calculator.httpbase import Application, CalcServer, report_loop_error
from calculator.service import OperationService

USAGE = f"usage: python3 -m calculator {{{','.join((*config.ROLES, 'all'))}}}"


def _application(settings: Settings) -> Application:
    if settings.role == "front":
        return FrontEnd(settings)
    return OperationService(settings.role, settings.limits)


async def _serve(settings: Settings, env: Mapping[str, str]) -> None:
    """Run one role, or with ``all`` every role on consecutive ports, until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(report_loop_error)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        # As PID 1 in a container a signal without a handler is ignored; stopping cleanly here
        # makes `docker stop` quick.
        loop.add_signal_handler(signum, stop.set)
    servers: list[CalcServer] = []
    try:
        if settings.role == "all":
            urls: dict[str, str] = {}
            for offset, name in enumerate(SERVICES, start=1):
                port = settings.port + offset if settings.port else 0
                role_settings = replace(config.load(name, env), host=settings.host, port=port)
                server = CalcServer(role_settings, _application(role_settings))
                servers.append(server)
                _, bound = await server.start()
                urls[name] = f"http://{_url_host(settings.host)}:{bound}"
            settings = replace(
                config.load("front", env),
                host=settings.host,
                port=settings.port,
                service_urls=urls,
            )
        server = CalcServer(settings, _application(settings))
        servers.append(server)
        await server.start()
        await stop.wait()
    finally:
        for server in servers:
            server.close()


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
    # Defence in depth: an operation that slipped past arith's own contexts raises instead of
    # rounding silently to the default 28 digits.
    decimal.setcontext(arith.exact_context())
    try:
        asyncio.run(_serve(settings, os.environ))
    except OSError as error:
        print(
            f"calculator: cannot listen on {settings.host}:{settings.port}: {error}",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
