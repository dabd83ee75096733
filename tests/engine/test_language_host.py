"""Our Python language host (tools/pulumi-toolchain/language-host) driven by the real engine.

Throwaway programs that need no resource provider (component resources only) go through
``pulumi preview``/``up``/``stack output``/``destroy`` with the ``virtualenv`` runtime option
given relative to the project, the way the repository's Pulumi.yaml gives it. Also: a
``pulumi.RunError`` fails ``pulumi up`` with its message and no traceback, an unhandled
exception is reported once, and ``--policy-pack policy`` starts the lab's pack (through the
host's RunPlugin, in the pack's own ``../.venv``) and lets it reject a stack.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from .conftest import POLICY_PACK, VENV, MakeStack, Result, Stack, Toolchain

pytestmark = pytest.mark.engine

# A component stands in for a provider's resource: the engine registers it, and policy packs
# see its type and inputs, without any plugin.
COMPONENT = """
import os
import sys

import pulumi


class Box(pulumi.ComponentResource):
    def __init__(self, kind: str, name: str, props: dict) -> None:
        super().__init__(kind, name, props)
        self.register_outputs({})
"""

OUTPUTS_PROGRAM = (
    COMPONENT
    + """
config = pulumi.Config()
Box("lab:index:Box", "box", {"size": 3})
pulumi.export("greeting", "hello " + config.get("who", "nobody"))
pulumi.export("password", config.require_secret("password"))
pulumi.export("prefix", sys.prefix)
pulumi.export("virtualEnv", os.environ.get("VIRTUAL_ENV", ""))
"""
)

RUN_ERROR_PROGRAM = (
    COMPONENT
    + """
Box("lab:index:Box", "box", {})
raise pulumi.RunError("target must be docker or openstack, not 'azure'")
"""
)

CRASHING_PROGRAM = (
    COMPONENT
    + """
def lookup():
    return {}["flavour"]


lookup()
"""
)

# With ``privileged`` set, a privileged Docker container as the lab's policy pack sees one (same
# type token); without, the same inputs on another type, which the pack must leave alone. (The
# pack's stack-wide rule reads outputs, which components lack, so no container appears there.)
CONTAINERS_PROGRAM = (
    COMPONENT
    + """
container = pulumi.Config().get_bool("privileged")
Box(
    "docker:index/container:Container" if container else "lab:index:Box",
    "sum",
    {
        "image": "busybox",
        "labels": [{"label": "calculator-lab.role", "value": "sum"}],
        "privileged": True,
    },
)
"""
)


@pytest.fixture
def host_cli(toolchain: Toolchain) -> Toolchain:
    # No provider is needed: these programs only use component resources.
    toolchain.require()
    return toolchain


def write_program(root: Path, name: str, source: str, virtualenv: str | None = "venv") -> Path:
    """A project directory with Pulumi.yaml; a relative ``virtualenv`` is resolved by the host
    against the project directory, where `link_venv` puts it."""
    program = root / "src" / name
    program.mkdir(parents=True)
    (program / "__main__.py").write_text(textwrap.dedent(source))
    options: dict[str, str] = {"toolchain": "pip"}
    if virtualenv is not None:
        options["virtualenv"] = virtualenv
    project = {"name": name.replace("_", "-"), "runtime": {"name": "python", "options": options}}
    (program / "Pulumi.yaml").write_text(json.dumps(project, indent=2))
    return program


def link_venv(stack: Stack) -> Path:
    # A link rather than a copy: make_stack copies the program, and the venv is large.
    link = stack.workdir / "venv"
    link.symlink_to(VENV, target_is_directory=True)
    return link


def no_traceback(result: Result) -> None:
    assert "Traceback" not in result.output, result.describe()


def test_preview_up_outputs_destroy_in_the_project_virtualenv(
    host_cli: Toolchain, make_stack: MakeStack, tmp_path: Path
) -> None:
    program = write_program(tmp_path, "outputs", OUTPUTS_PROGRAM)
    stack = make_stack(program, config={"who": "lab"})
    stack.run("config", "set", "--secret", "password", "s3cret", check=True)
    venv = link_venv(stack)
    # The toolchain's PATH holds no python of the venv: only the option can lead the host there.
    assert str(VENV / "bin") not in host_cli.env["PATH"].split(os.pathsep)

    preview = stack.preview()
    assert preview.code == 0, preview.describe()
    assert "lab:index:Box" in preview.output
    assert "+ 2 to create" in preview.output, preview.describe()

    up = stack.run("up", "--yes", "--skip-preview")
    assert up.code == 0, up.describe()
    assert "+ 2 created" in up.output, up.describe()

    shown = stack.run("stack", "output", "--json", "--show-secrets", check=True)
    outputs = json.loads(shown.stdout)
    assert outputs["greeting"] == "hello lab"
    assert outputs["password"] == "s3cret"
    assert outputs["virtualEnv"] == str(venv)
    assert Path(outputs["prefix"]).resolve() == VENV.resolve()
    hidden = stack.run("stack", "output", "password", check=True)
    assert "s3cret" not in hidden.stdout

    again = stack.run("up", "--yes", "--skip-preview")
    assert again.code == 0, again.describe()
    assert "2 unchanged" in again.output, again.describe()

    down = stack.run("destroy", "--yes", "--skip-preview")
    assert down.code == 0, down.describe()
    assert "2 deleted" in down.output, down.describe()
    after = stack.run("stack", "output", "--json", check=True)
    assert json.loads(after.stdout) == {}


def test_missing_virtualenv_is_named(
    host_cli: Toolchain, make_stack: MakeStack, tmp_path: Path
) -> None:
    program = write_program(tmp_path, "novenv", OUTPUTS_PROGRAM, virtualenv="no-such-venv")
    stack = make_stack(program)
    result = stack.preview()
    assert result.code != 0, result.describe()
    assert str(stack.workdir / "no-such-venv") in result.output, result.describe()
    assert "virtualenv" in result.output


def test_run_error_fails_up_with_its_message_and_no_traceback(
    host_cli: Toolchain, make_stack: MakeStack, tmp_path: Path
) -> None:
    stack = make_stack(write_program(tmp_path, "runerror", RUN_ERROR_PROGRAM))
    link_venv(stack)
    result = stack.run("up", "--yes", "--skip-preview")
    assert result.code != 0, result.describe()
    assert "target must be docker or openstack, not 'azure'" in result.output, result.describe()
    no_traceback(result)


def test_unhandled_exception_is_reported_once_with_the_program_frames(
    host_cli: Toolchain, make_stack: MakeStack, tmp_path: Path
) -> None:
    stack = make_stack(write_program(tmp_path, "crash", CRASHING_PROGRAM))
    link_venv(stack)
    result = stack.preview()
    assert result.code != 0, result.describe()
    assert "KeyError: 'flavour'" in result.output, result.describe()
    assert "in lookup" in result.output
    # The exec script already showed the error; the host must not add an exit-code message.
    assert "exited with code" not in result.output, result.describe()


def policy_processes_in(workdir: Path) -> list[int]:
    """Processes still running in the program's directory (a policy pack runs there)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if Path(os.readlink(proc / "cwd")) == workdir:
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_policy_pack_runs_from_its_own_directory_and_rejects(
    host_cli: Toolchain, make_stack: MakeStack, tmp_path: Path
) -> None:
    # The pack's PulumiPolicy.yaml says `virtualenv: ../.venv`, relative to policy/.
    assert "../.venv" in (POLICY_PACK / "PulumiPolicy.yaml").read_text()
    stack = make_stack(write_program(tmp_path, "containers", CONTAINERS_PROGRAM))
    link_venv(stack)

    passing = stack.preview_with_policy()
    assert passing.code == 0, passing.describe()
    assert "calculator-lab-security" in passing.output, passing.describe()

    stack.run("config", "set", "privileged", "true", check=True)
    rejected = stack.preview_with_policy()
    assert rejected.code != 0, rejected.describe()
    assert "no-privileged-container" in rejected.output, rejected.describe()
    assert "container 'sum' runs privileged" in rejected.output, rejected.describe()
    no_traceback(rejected)

    assert policy_processes_in(stack.workdir.resolve()) == []
