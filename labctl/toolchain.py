"""The Pulumi toolchain a stack needs, and the environment in which `pulumi` runs.

What is installed comes first: a `pulumi` CLI (3.x) on PATH or where Pulumi's installer puts it
(~/.pulumi/bin), and the provider plugins at the exact versions the pip SDKs ask for
(their pulumi-plugin.json) in the user's PULUMI_HOME (~/.pulumi), or installed there now with
`pulumi plugin install` where the network allows. Whatever is still missing is built from Go
modules by tools/pulumi-toolchain/build into the cache outside the checkout, which is the whole
toolchain on a machine without Pulumi (ours: no download site is reachable).

An installed CLI keeps the language host installed beside it (the official install ships its
own pulumi-language-python for its version); ours (tools/pulumi-toolchain/language-host) is
built only when the chosen CLI has none beside it or on PATH.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from labctl import backend, stack_env
from labctl.backend import Backend, user_pulumi_home
from labctl.paths import ROOT, cache_dir, cache_env

BUILD = ROOT / "tools/pulumi-toolchain/build"
LIB = ROOT / "tools/pulumi-toolchain/lib.sh"

# What each target's stacks need besides the CLI and the language host.
PROVIDERS = {"docker": "docker", "openstack": "openstack"}

# Cold build of each target with an empty cache on a 2-core machine, told to the user before a
# build (the CLI's module downloads included); how they were measured, and when, is in
# tools/pulumi-toolchain/README.md ("Cost"). The host and providers reuse what the CLI compiled.
COLD_SECONDS = {"pulumi": 205, "language-python": 15, "docker": 75, "openstack": 80}
NAMES = {
    "pulumi": "pulumi CLI",
    "language-python": "Python language host",
    "docker": "docker provider",
    "openstack": "openstack provider",
}

# `pulumi plugin install` of a missing plugin, where the network allows; here it fails at once.
PLUGIN_INSTALL_TIMEOUT = 120

console = Console(stderr=True, highlight=False, soft_wrap=True)

Builder = Callable[[list[str], Mapping[str, str]], None]


class ToolchainError(RuntimeError):
    """The build failed; the message names its log."""


@dataclass(frozen=True)
class Built:
    """Where tools/pulumi-toolchain/build puts things for the pinned versions (lib.sh)."""

    bin_dir: Path
    pulumi_home: Path


@dataclass(frozen=True)
class Plan:
    """Which toolchain a command runs with, and what must be built for it."""

    cli: Path | None  # an installed CLI, or None: ours, built from source
    pulumi_home: Path  # where the provider plugins are
    build: list[str]  # targets for tools/pulumi-toolchain/build, in its order
    reason: str  # why, in a few words, for the one-line report

    def summary(self) -> str:
        """The one line that says which path was taken."""
        if not self.build:
            return f"pulumi: using the installed {self.cli} and plugins in {self.pulumi_home}"
        what = ", ".join(NAMES[t] for t in self.build)
        if self.cli is None:
            return f"pulumi: using our build from Go modules ({what}): {self.reason}"
        return (
            f"pulumi: using the installed {self.cli} with our build from Go modules ({what}): "
            f"{self.reason}"
        )


def plugin_versions(providers: Iterable[str]) -> dict[str, str]:
    """The exact plugin version each pip provider SDK asks the engine for."""
    versions = {}
    for name in providers:
        spec = find_spec(f"pulumi_{name}")
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError(f"pulumi_{name} is not installed in {sys.prefix}")
        plugin_json = Path(next(iter(spec.submodule_search_locations))) / "pulumi-plugin.json"
        versions[name] = str(json.loads(plugin_json.read_text())["version"])
    return versions


def built_paths() -> Built:
    """The build's bin directory and PULUMI_HOME, from lib.sh (the one place that keys them)."""
    script = 'source "$1" && printf "%s\\0%s" "$TOOLCHAIN_BIN" "$TOOLCHAIN_PULUMI_HOME"'
    out = subprocess.run(
        ["bash", "-c", script, "bash", str(LIB)],
        check=True,
        capture_output=True,
        env=os.environ | cache_env(),
    ).stdout.decode()
    bin_dir, home = out.split("\0")
    return Built(Path(bin_dir), Path(home))


def installed_cli(env: Mapping[str, str]) -> Path | None:
    """A Pulumi 3.x CLI that is not ours: on PATH, else in ~/.pulumi/bin (the installer's)."""
    ours = cache_dir().resolve()
    candidates = [shutil.which("pulumi", path=env.get("PATH", os.defpath))]
    candidates.append(str(Path(env.get("HOME", str(Path.home()))) / ".pulumi/bin/pulumi"))
    for found in candidates:
        if not found or not os.access(found, os.X_OK):
            continue
        path = Path(found)
        if path.resolve().is_relative_to(ours):
            continue  # built by us into the cache: the source branch, not an install
        if _cli_version(path, env).startswith("v3."):
            return path
    return None


def _cli_version(cli: Path, env: Mapping[str, str]) -> str:
    try:
        result = subprocess.run(
            [cli, "version"],
            env={**env, "PULUMI_SKIP_UPDATE_CHECK": "true"},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return result.stdout.strip() if result.returncode == 0 else ""


def plugin_path(home: Path, name: str, version: str) -> Path:
    return home / "plugins" / f"resource-{name}-v{version}" / f"pulumi-resource-{name}"


def has_plugin(home: Path, name: str, version: str) -> bool:
    binary = plugin_path(home, name, version)
    partial = binary.parent.with_name(binary.parent.name + ".partial")  # interrupted install
    return os.access(binary, os.X_OK) and not partial.exists()


def try_plugin_install(
    cli: Path, home: Path, name: str, version: str, env: Mapping[str, str]
) -> bool:
    """`pulumi plugin install resource NAME VERSION`, the usual way; False when it cannot."""
    console.print(f"pulumi: trying `pulumi plugin install resource {name} {version}`")
    try:
        result = subprocess.run(
            [cli, "plugin", "install", "resource", name, version],
            env={**env, "PULUMI_HOME": str(home), "PULUMI_SKIP_UPDATE_CHECK": "true"},
            capture_output=True,
            text=True,
            timeout=PLUGIN_INSTALL_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and has_plugin(home, name, version)


def language_host_beside(cli: Path, env: Mapping[str, str]) -> bool:
    """The engine finds a language host beside the CLI, or on PATH."""
    if os.access(cli.parent / "pulumi-language-python", os.X_OK):
        return True
    return shutil.which("pulumi-language-python", path=env.get("PATH", os.defpath)) is not None


def plan(
    targets: set[str],
    env: Mapping[str, str],
    built: Built,
    *,
    install: bool = True,
) -> Plan:
    """What to run with for stacks of these targets: installed parts first, the rest built."""
    providers = sorted(PROVIDERS[t] for t in targets)
    versions = plugin_versions(providers)
    cli = installed_cli(env)
    if cli is None:
        return Plan(
            None, built.pulumi_home, ["pulumi", "language-python", *providers], _no_cli(env)
        )
    home = user_pulumi_home(env)
    missing = [p for p in providers if not has_plugin(home, p, versions[p])]
    if install:
        missing = [p for p in missing if not try_plugin_install(cli, home, p, versions[p], env)]
    host = [] if language_host_beside(cli, env) else ["language-python"]
    if not missing:
        return Plan(cli, home, host, "no pulumi-language-python beside the CLI")
    # Our PULUMI_HOME then holds every provider the stacks need (a built one is a no-op).
    wanted = ", ".join(f"resource-{p}-v{versions[p]}" for p in missing)
    return Plan(cli, built.pulumi_home, [*host, *providers], f"no {wanted} in {home / 'plugins'}")


def _no_cli(env: Mapping[str, str]) -> str:
    home = Path(env.get("HOME", str(Path.home())))
    return f"no pulumi 3.x CLI on PATH or in {home / '.pulumi/bin'}"


def environment(
    chosen: Plan, built: Built, env: Mapping[str, str], state: Backend | None = None
) -> dict[str, str]:
    """The environment `pulumi` runs in: the chosen CLI first on PATH, its plugins' home, the
    state backend of labctl/backend.py (`state`, decided from `env` when not given) with the
    login's credentials, no update check, no download behind our back. The user's own
    passphrase wins."""
    path = [str(built.bin_dir)] if chosen.cli is None or chosen.build else []
    if chosen.cli is not None:
        path.insert(0, str(chosen.cli.parent))
    state = state or backend.decide(env)
    if state.source == "local":
        (cache_dir() / "state").mkdir(parents=True, exist_ok=True)
    return {
        **env,
        "PATH": os.pathsep.join([*path, env.get("PATH", os.defpath)]),
        "PULUMI_HOME": str(chosen.pulumi_home),
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        # The SDKs list every installed provider (openstack's for a Docker stack too): those not
        # needed are not downloaded, the needed ones are in place.
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        **state.environment(),
        # The empty passphrase is the local-backend convention the shipped stack files' salt is
        # made for; set PULUMI_CONFIG_PASSPHRASE yourself (and use your own stack) to encrypt.
        "PULUMI_CONFIG_PASSPHRASE": env.get("PULUMI_CONFIG_PASSPHRASE", ""),
    }


def announce(env: Mapping[str, str]) -> Backend:
    """Decide the state backend and say so: every command's first line."""
    state = backend.decide(env)
    console.print(state.line(), markup=False)
    return state


def ensure(
    targets: set[str], *, build: Builder | None = None, state: Backend | None = None
) -> dict[str, str]:
    """Install or build what is missing for stacks of these targets; return the environment.
    The state backend is `state` when the caller announced it already, else announced here."""
    env = dict(os.environ)
    state = state or announce(env)
    built = built_paths()
    chosen = plan(targets, env, built)
    console.print(chosen.summary())
    if chosen.build:
        # The build installs plugins with the chosen CLI when it builds none of its own.
        build_env = environment(chosen, built, env, state)
        (build or run_build)(chosen.build, build_env)
    return stack_env.engine_env(environment(chosen, built, env, state))


def pulumi_environment(state: Backend | None = None) -> dict[str, str]:
    """The environment of whatever is there now, for stacks of any target, installing and
    building nothing: for read-only commands (`pulumi stack output`) and scripts/pulumi-env.
    Names the state backend first (on stderr), as every command does."""
    env = dict(os.environ)
    state = state or announce(env)
    built = built_paths()
    chosen = plan(set(PROVIDERS), env, built, install=False)
    return stack_env.engine_env(environment(chosen, built, env, state))


def print_exports() -> None:
    """`export` lines for what pulumi_environment() sets or changes (scripts/pulumi-env)."""
    state = announce(os.environ)
    backend.print_exports(state.for_shell(pulumi_environment(state)))


def run_build(targets: list[str], env: Mapping[str, str]) -> None:
    """tools/pulumi-toolchain/build TARGETS, its progress shown as it goes.

    A warm run shows nothing (the stamps answer in a fraction of a second); a cold one says
    what it builds and how long that takes on 2 idle cores, then each step with the time since
    the start, under a spinner with the elapsed time while Go compiles. The full output goes to
    a log in the cache.
    """
    log_path = cache_dir() / "pulumi-toolchain" / "build.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    announced = False
    downloads = 0
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with (
        log_path.open("w") as log,
        Progress(
            *columns, console=console, transient=True, disable=not console.is_terminal
        ) as progress,
        subprocess.Popen(
            [BUILD, *targets],
            env={**env, **cache_env()},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        ) as proc,
    ):
        task = progress.add_task("pulumi: checking the toolchain", total=None)
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            text = line.rstrip()
            if text.startswith("go: downloading"):
                downloads += 1
                progress.update(task, description=f"pulumi: {downloads} Go modules downloaded")
            elif text.startswith(("pulumi-toolchain: ", "language-host: ")):
                if not announced and ": downloading the modules" not in text:
                    continue  # nothing to build so far (stamps current)
                if not announced:
                    announced = True
                    console.print(_announce(targets, log_path))
                if "summary" in text:
                    break  # the table that follows stays in the log
                step = text.split(": ", 1)[1]
                console.print(f"  [{clock(time.monotonic() - start)}] {step}")
                progress.update(task, description=f"pulumi: {step.split(' (')[0]}")
        log.writelines(proc.stdout)  # the rest (summary), once the loop stopped reading
    if proc.returncode != 0:
        tail = "".join(log_path.read_text().splitlines(keepends=True)[-30:])
        console.print(tail, markup=False)
        raise ToolchainError(f"tools/pulumi-toolchain/build failed; full log: {log_path}")
    if announced or time.monotonic() - start > 5:
        console.print(f"pulumi: toolchain ready in {clock(time.monotonic() - start)}")


def _announce(targets: list[str], log_path: Path) -> str:
    parts = ", ".join(f"{NAMES[t]} ~{clock(COLD_SECONDS[t])}" for t in targets)
    total = clock(sum(COLD_SECONDS[t] for t in targets))
    return (
        f"pulumi: first run: compiling {parts} from Go modules; about {total} on 2 idle cores, "
        f"more on a busy machine (log: {log_path})"
    )


def clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"
