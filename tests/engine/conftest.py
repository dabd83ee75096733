"""Fixtures for engine tests (marker ``engine``): the real pulumi CLI, language host and providers.

The toolchain comes from tools/pulumi-toolchain (built by ``make test`` before pytest). A test
asks for the parts it needs (``toolchain.require("openstack")``) and is skipped, naming the
missing binaries, when they were not built. Every test gets its own file backend in a temporary
directory, a fixed passphrase for secrets, and no network: OpenStack previews use dummy
credentials and the provider's delayed authentication.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

# Re-exported under the names engine tests import them by.
from tests.docker_client import docker_daemon_answers as docker_daemon_answers
from tests.docker_client import docker_host as docker_host

REPO = Path(__file__).resolve().parents[2]
TOOLCHAIN = REPO / "tools" / "pulumi-toolchain"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
VENV = REPO / ".venv"
POLICY_PACK = REPO / "policy"
PASSPHRASE = "calculator-lab-engine-tests"

# A preview of a small stack takes seconds once plugins are warm; five minutes leaves room for a
# loaded 2-core CI box without letting a hung plugin stall the whole run.
DEFAULT_TIMEOUT = 300.0

# The provider reads these at configure time; with delayed auth (its default) nothing contacts
# the address during a preview of new resources.
DUMMY_OPENSTACK = {
    "OS_AUTH_URL": "http://127.0.0.1:5000/v3",
    "OS_USERNAME": "calculator-lab-tests",
    "OS_PASSWORD": "not-a-password",
    "OS_PROJECT_NAME": "calculator-lab-tests",
    "OS_USER_DOMAIN_NAME": "Default",
    "OS_PROJECT_DOMAIN_NAME": "Default",
    "OS_REGION_NAME": "RegionOne",
}


def _toolchain_env() -> dict[str, str]:
    """The environment `tools/pulumi-toolchain/env` prints, applied to ours."""
    shell = 'eval "$("$1")" && env -0'
    out = subprocess.run(
        ["bash", "-c", shell, "bash", str(TOOLCHAIN / "env")],
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout.decode()
    return dict(entry.split("=", 1) for entry in out.split("\0") if "=" in entry)


@dataclass(frozen=True)
class Toolchain:
    """Where the built toolchain lives, and what of it is missing."""

    env: Mapping[str, str]

    @property
    def bin_dir(self) -> Path:
        return Path(self.env["PATH"].split(os.pathsep, 1)[0])

    @property
    def pulumi_home(self) -> Path:
        return Path(self.env["PULUMI_HOME"])

    def _provider(self, name: str) -> Path:
        version = json.loads(
            next(
                VENV.glob(f"lib/python3*/site-packages/pulumi_{name}/pulumi-plugin.json")
            ).read_text()
        )["version"]
        return (
            self.pulumi_home / "plugins" / f"resource-{name}-v{version}" / f"pulumi-resource-{name}"
        )

    def parts(self, *providers: str) -> list[Path]:
        core = [
            self.bin_dir / "pulumi",
            self.bin_dir / "pulumi-language-python",
            self.bin_dir / "pulumi-language-python-exec",
        ]
        return core + [self._provider(p) for p in providers]

    def require(self, *providers: str) -> None:
        missing = [str(p) for p in self.parts(*providers) if not os.access(p, os.X_OK)]
        if missing:
            pytest.skip(
                "Pulumi toolchain not built (run tools/pulumi-toolchain/build); missing: "
                + ", ".join(missing)
            )


@pytest.fixture(scope="session")
def toolchain() -> Toolchain:
    return Toolchain(_toolchain_env())


@dataclass(frozen=True)
class Result:
    """What one `pulumi` command did."""

    args: Sequence[str]
    code: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def describe(self) -> str:
        return (
            f"`pulumi {' '.join(self.args)}` exited {self.code} after {self.seconds:.1f}s\n"
            f"--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"
        )


@dataclass
class Pulumi:
    """Runs the built `pulumi` against one test's private file backend."""

    toolchain: Toolchain
    backend: Path
    extra_env: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        return {
            **self.toolchain.env,
            "PULUMI_BACKEND_URL": self.backend.as_uri(),
            "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
            # Plain output is easier to match than the interactive renderer's.
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "NO_COLOR": "1",
            **self.extra_env,
        }

    def __call__(
        self, *args: str, cwd: Path, timeout: float = DEFAULT_TIMEOUT, check: bool = False
    ) -> Result:
        argv = [str(self.toolchain.bin_dir / "pulumi"), *args, "--non-interactive"]
        start = time.monotonic()
        proc = subprocess.run(
            argv, cwd=cwd, env=self.env(), capture_output=True, text=True, timeout=timeout
        )
        result = Result(args, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)
        if check and result.code != 0:
            raise AssertionError(result.describe())
        return result


@pytest.fixture
def pulumi_cli(toolchain: Toolchain, tmp_path: Path) -> Pulumi:
    backend = tmp_path / "backend"
    backend.mkdir()
    return Pulumi(toolchain, backend)


@dataclass
class Stack:
    """A stack of a program copied into a temporary directory (so no Pulumi.<stack>.yaml lands
    in the repository)."""

    pulumi: Pulumi
    name: str
    workdir: Path

    def run(self, *args: str, timeout: float = DEFAULT_TIMEOUT, check: bool = False) -> Result:
        return self.pulumi(
            *args, "--stack", self.name, cwd=self.workdir, timeout=timeout, check=check
        )

    def preview(self, *extra: str, policy_config: Mapping[str, object] | None = None) -> Result:
        args = ["preview", "--diff", *extra]
        if policy_config is not None:
            config_file = self.workdir / "policy-config.json"
            config_file.write_text(json.dumps(policy_config))
            args += ["--policy-pack-config", str(config_file)]
        return self.run(*args)

    def preview_with_policy(self, policy_config: Mapping[str, object] | None = None) -> Result:
        return self.preview("--policy-pack", str(POLICY_PACK), policy_config=policy_config)


def _write_project(workdir: Path, project: str) -> None:
    # JSON is YAML; the runtime options mirror the real project's Pulumi.yaml, with the
    # virtualenv as an absolute path because the program is run from a copy.
    project_file = {
        "name": project,
        "runtime": {
            "name": "python",
            "options": {"toolchain": "pip", "virtualenv": str(VENV)},
        },
    }
    (workdir / "Pulumi.yaml").write_text(json.dumps(project_file, indent=2))


MakeStack = Callable[..., Stack]


@pytest.fixture
def make_stack(pulumi_cli: Pulumi, tmp_path: Path) -> MakeStack:
    """``make_stack(program_dir, config={...}, stack="test")``: a new stack of a copy of the
    program, with its config set (values are strings; a key may carry its namespace)."""

    def make(program: Path, config: Mapping[str, str] | None = None, stack: str = "test") -> Stack:
        workdir = tmp_path / "programs" / program.name
        shutil.copytree(program, workdir, ignore=shutil.ignore_patterns("__pycache__"))
        if not (workdir / "Pulumi.yaml").exists():
            _write_project(workdir, program.name.replace("_", "-"))
        pulumi_cli(
            "stack", "init", stack, "--secrets-provider", "passphrase", cwd=workdir, check=True
        )
        made = Stack(pulumi_cli, stack, workdir)
        for key, value in (config or {}).items():
            made.run("config", "set", key, value, check=True)
        return made

    return make
