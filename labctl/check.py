"""`lab check STACK`: does the deployed calculator answer, service by service?

It reads the stack's `calculatorUrl` (from `pulumi stack output --json`, a saved copy of it, or
`--url`), asks the front end's `GET /health` (which asks each service's own /health) and posts
`(5+6)*2`, expecting `22`. VMs take minutes to boot after `pulumi up` returns, so a failing
check is retried, every `interval` seconds until `timeout`, before the verdict.

When an OpenStack stack's front end or a service does not answer, the report also shows what
the console log of each of those VMs says about it (labctl/console.py reads them).

`check_calculator` is the logic, with no printing and an injectable clock, sleep and HTTP
client; `check` is the typer command around it. Exit codes: 0 the calculator answers and every
service is healthy; 1 it does not (the table says which part); 2 no URL to check.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.table import Table

from lab.names import ROLES
from labctl.arguments import StackArg
from labctl.console import ConsoleNote, console_notes, render_consoles, server_names
from labctl.paths import stack_file

EXPRESSION = "(5+6)*2"
EXPECTED = "22"
REQUEST_TIMEOUT = 10.0

Verdict = Literal["ok", "degraded", "unreachable"]


@dataclass(frozen=True)
class HttpResult:
    status: int
    text: str


#: (method, url, body, timeout) -> result; raises OSError when nothing answers.
HttpClient = Callable[[str, str, bytes | None, float], HttpResult]


@dataclass(frozen=True)
class Row:
    name: str  # "front", a service name, or the expression
    ok: bool
    detail: str


@dataclass(frozen=True)
class CheckReport:
    url: str
    verdict: Verdict
    rows: tuple[Row, ...]
    attempts: int
    elapsed_s: float
    consoles: tuple[ConsoleNote, ...] = ()

    @property
    def ok(self) -> bool:
        return self.verdict == "ok"

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Attempt:
    rows: list[Row] = field(default_factory=list)
    front_answers: bool = False


def urllib_client(method: str, url: str, body: bytes | None, timeout: float) -> HttpResult:
    request = urllib.request.Request(url, data=body, method=method)  # noqa: S310 -- http(s) URL of the student's own stack
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return HttpResult(response.status, response.read().decode("utf-8", "replace"))
    except urllib.error.HTTPError as error:  # a status is an answer (503: degraded health)
        return HttpResult(error.code, error.read().decode("utf-8", "replace"))
    except urllib.error.URLError as error:
        reason = error.reason
        raise reason if isinstance(reason, OSError) else OSError(str(reason)) from None


def _describe(error: OSError) -> str:
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


def _health_rows(url: str, http: HttpClient) -> _Attempt:
    attempt = _Attempt()
    try:
        reply = http("GET", f"{url}/health", None, REQUEST_TIMEOUT)
    except OSError as error:
        attempt.rows.append(Row("front", False, f"no answer at {url}: {_describe(error)}"))
        return attempt
    try:
        health = json.loads(reply.text)
        dependencies: Mapping[str, Mapping[str, Any]] = health["dependencies"]
    except (ValueError, KeyError, TypeError):
        attempt.rows.append(
            Row("front", False, f"GET /health answered {reply.status} without the front end's JSON")
        )
        return attempt
    attempt.front_answers = True
    attempt.rows.append(Row("front", True, f"{url} answers ({health.get('status', '?')})"))
    if not dependencies:
        attempt.rows.append(Row("services", False, "the front end reports no service"))
    for name, entry in dependencies.items():
        status = str(entry.get("status", "?"))
        where = entry.get("url", "?")
        if status == "ok":
            detail = f"{where} ({entry.get('latency_ms', '?')} ms)"
        else:
            detail = f"{status} at {where}: {entry.get('error') or 'see the front end log'}"
        attempt.rows.append(Row(name, status == "ok", detail))
    return attempt


def _calculation_row(url: str, http: HttpClient, expression: str, expected: str) -> Row:
    try:
        reply = http("POST", f"{url}/", expression.encode(), REQUEST_TIMEOUT)
    except OSError as error:
        return Row(expression, False, f"no answer: {_describe(error)}")
    answer = reply.text.strip()
    if reply.status == 200 and answer == expected:
        return Row(expression, True, f"= {answer}")
    return Row(expression, False, f"HTTP {reply.status}: {answer[:200]} (expected {expected})")


def check_once(
    url: str,
    http: HttpClient = urllib_client,
    expression: str = EXPRESSION,
    expected: str = EXPECTED,
) -> tuple[Verdict, tuple[Row, ...]]:
    """One look at the calculator behind `url`: its health, then one calculation."""
    url = url.rstrip("/")
    attempt = _health_rows(url, http)
    if not attempt.front_answers:
        return "unreachable", tuple(attempt.rows)
    rows = (*attempt.rows, _calculation_row(url, http, expression, expected))
    return ("ok" if all(row.ok for row in rows) else "degraded"), rows


def check_calculator(
    url: str,
    *,
    timeout: float = 300.0,
    interval: float = 5.0,
    http: HttpClient = urllib_client,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[int, Verdict, tuple[Row, ...]], None] | None = None,
) -> CheckReport:
    """Check until the calculator is healthy or `timeout` seconds have passed (0: once).
    `on_retry` hears about each failed attempt that will be retried."""
    start = clock()
    attempts = 0
    while True:
        attempts += 1
        verdict, rows = check_once(url, http)
        elapsed = clock() - start
        if verdict == "ok" or elapsed + interval > timeout:
            return CheckReport(url.rstrip("/"), verdict, rows, attempts, round(elapsed, 1))
        if on_retry is not None:
            on_retry(attempts, verdict, rows)
        sleep(interval)


class OutputsError(RuntimeError):
    """No calculatorUrl to check; the message says why and what to do."""


def calculator_url(outputs: Mapping[str, Any], source: str) -> str:
    url = outputs.get("calculatorUrl")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise OutputsError(f"{source} has no calculatorUrl: is the stack deployed (lab up)?")
    return url


def stack_outputs(stack: str) -> dict[str, Any]:
    """`pulumi stack output --json --stack STACK`, run where the stack file is."""
    from labctl.toolchain import pulumi_environment  # the toolchain is only needed here

    try:
        result = subprocess.run(
            ["pulumi", "stack", "output", "--json", "--stack", stack],
            env=pulumi_environment(),
            cwd=stack_file(stack).parent,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
    except FileNotFoundError:
        raise OutputsError("no pulumi CLI here: run `lab up` once, or pass --url") from None
    if result.returncode != 0:
        raise OutputsError(
            f"pulumi stack output --stack {stack} failed: {result.stderr.strip()[-500:]}"
            f" (deployed? lab up {stack}; or pass --url)"
        )
    outputs = json.loads(result.stdout or "{}")
    return outputs if isinstance(outputs, dict) else {}


def failing_roles(rows: Iterable[Row]) -> list[str]:
    """The roles whose VM does not answer: the front end's row, or a service's."""
    failed = {row.name for row in rows if not row.ok}
    return [role for role in ROLES if role in failed]


def render(report: CheckReport) -> Table:
    table = Table(title=f"calculator at {report.url}", title_justify="left")
    table.add_column("check")
    table.add_column("verdict")
    table.add_column("detail", overflow="fold")
    for row in report.rows:
        mark = "[green]ok[/green]" if row.ok else "[red]FAIL[/red]"
        table.add_row(row.name, mark, row.detail)
    return table


def summary(report: CheckReport) -> str:
    tries = f"{report.attempts} attempt{'s' if report.attempts > 1 else ''}, {report.elapsed_s:g} s"
    if report.ok:
        return f"[green]OK[/green]: the calculator answers {EXPRESSION} = {EXPECTED} ({tries})"
    failed = ", ".join(row.name for row in report.rows if not row.ok)
    if report.verdict == "unreachable":
        hint = (
            "the front end does not answer: VMs still booting, containers stopped (lab up),"
            " or the floating IP / security group?"
        )
    else:
        hint = f"failing: {failed}"
    return f"[red]{report.verdict.upper()}[/red]: {hint} ({tries})"


def check(
    stack: StackArg = "dev",
    timeout: Annotated[
        float,
        typer.Option(help="Seconds to keep retrying while the VMs boot (0: one attempt only)."),
    ] = 300.0,
    interval: Annotated[float, typer.Option(help="Seconds between attempts.")] = 5.0,
    url: Annotated[
        str | None, typer.Option(help="Check this calculatorUrl instead of the stack's outputs.")
    ] = None,
    outputs_file: Annotated[
        Path | None,
        typer.Option(help="Read the outputs from this `pulumi stack output --json` file."),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the report as JSON instead of a table.")
    ] = False,
) -> None:
    """Tell, service by service, whether the stack's calculator answers through calculatorUrl."""
    console = Console(stderr=True)
    outputs: Mapping[str, Any] = {}  # none with --url: no server names to read consoles of
    try:
        if url is None:
            if outputs_file is not None:
                outputs = json.loads(outputs_file.read_text())
                url = calculator_url(outputs, str(outputs_file))
            else:
                outputs = stack_outputs(stack)
                url = calculator_url(outputs, f"stack {stack}")
    except (OutputsError, OSError, ValueError) as error:
        console.print(f"[red]lab check:[/red] {error}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None

    def progress(attempt: int, verdict: Verdict, rows: tuple[Row, ...]) -> None:
        failing = ", ".join(row.name for row in rows if not row.ok)
        console.print(
            f"attempt {attempt}: {verdict} ({failing}); again in {interval:g} s", highlight=False
        )

    report = check_calculator(url, timeout=timeout, interval=interval, on_retry=progress)
    if not report.ok:
        servers = server_names(outputs, failing_roles(report.rows))
        report = replace(report, consoles=console_notes(servers))
    if json_output:
        typer.echo(json.dumps(report.as_json(), indent=2))
    else:
        out = Console()
        out.print(render(report))
        for line in render_consoles(report.consoles):
            out.print(line, highlight=False, soft_wrap=True)
        out.print(summary(report), highlight=False)
    raise typer.Exit(0 if report.ok else 1)
