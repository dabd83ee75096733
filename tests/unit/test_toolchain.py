"""Which Pulumi toolchain `scripts/lab` runs with (labctl.toolchain), on fake installs.

A fake `pulumi` (a shell script) stands where a user's would be: on PATH or in ~/.pulumi/bin,
with plugins in ~/.pulumi/plugins. It answers `version` and fails `plugin install` (no network)
unless told otherwise, and records every call. Nothing is built: the builder is a recorder.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pytest

from labctl import toolchain

DOCKER = toolchain.plugin_versions(["docker"])["docker"]
OPENSTACK = toolchain.plugin_versions(["openstack"])["openstack"]

FAKE_CLI = """#!/bin/sh
echo "$*" >>"{calls}"
case "$1" in
version) echo "{version}" ;;
plugin) [ "{install}" = yes ] || exit 1
        d="$PULUMI_HOME/plugins/resource-$4-v$5"; mkdir -p "$d"
        printf '#!/bin/sh\\n' >"$d/pulumi-resource-$4"; chmod +x "$d/pulumi-resource-$4" ;;
esac
"""


class Machine:
    """A HOME, a PATH and a cache, empty until a test installs things into them."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.home = root / "home"
        self.path_dir = root / "usr-bin"
        self.calls = root / "calls.txt"
        for d in (self.home, self.path_dir):
            d.mkdir()
        self.calls.touch()
        monkeypatch.setenv("CALCLAB_CACHE", str(root / "cache"))
        self.built = toolchain.built_paths()
        self.env = {"HOME": str(self.home), "PATH": f"{self.path_dir}:/usr/bin:/bin"}

    def cli(
        self, where: Path, version: str = "v3.250.0", *, install: bool = False, host: bool = True
    ) -> Path:
        where.mkdir(parents=True, exist_ok=True)
        cli = where / "pulumi"
        cli.write_text(
            FAKE_CLI.format(calls=self.calls, version=version, install="yes" if install else "no")
        )
        cli.chmod(0o755)
        if host:
            (where / "pulumi-language-python").write_text("#!/bin/sh\n")
            (where / "pulumi-language-python").chmod(0o755)
        return cli

    def official(
        self, version: str = "v3.250.0", *, install: bool = False, host: bool = True
    ) -> Path:
        """Pulumi's installer layout: ~/.pulumi/bin, not on PATH."""
        return self.cli(self.home / ".pulumi" / "bin", version, install=install, host=host)

    def plugin(self, name: str, version: str) -> Path:
        binary = toolchain.plugin_path(self.home / ".pulumi", name, version)
        binary.parent.mkdir(parents=True)
        binary.write_text("#!/bin/sh\n")
        binary.chmod(0o755)
        return binary

    def plan(self, *targets: str) -> toolchain.Plan:
        return toolchain.plan(set(targets), self.env, self.built)


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Machine:
    return Machine(tmp_path, monkeypatch)


def test_installed_cli_and_plugin_build_nothing(machine: Machine) -> None:
    cli = machine.official()
    machine.plugin("docker", DOCKER)
    plan = machine.plan("docker")
    assert plan == toolchain.Plan(cli, machine.home / ".pulumi", [], plan.reason)
    assert plan.summary() == f"pulumi: using the installed {cli} and plugins in {plan.pulumi_home}"
    env = toolchain.environment(plan, machine.built, machine.env)
    assert env["PATH"].split(os.pathsep)[0] == str(cli.parent)
    assert str(machine.built.bin_dir) not in env["PATH"]
    assert env["PULUMI_HOME"] == str(machine.home / ".pulumi")


def test_cli_on_path_is_preferred_and_the_user_pulumi_home_is_honoured(
    machine: Machine, tmp_path: Path
) -> None:
    cli = machine.cli(machine.path_dir)
    machine.official()
    home = tmp_path / "elsewhere"
    toolchain.plugin_path(home, "docker", DOCKER).parent.mkdir(parents=True)
    toolchain.plugin_path(home, "docker", DOCKER).write_text("")
    toolchain.plugin_path(home, "docker", DOCKER).chmod(0o755)
    machine.env["PULUMI_HOME"] = str(home)
    plan = machine.plan("docker")
    assert (plan.cli, plan.pulumi_home, plan.build) == (cli, home, [])


def test_a_plugin_of_another_version_is_not_used(machine: Machine) -> None:
    cli = machine.official()
    machine.plugin("docker", "5.1.0")
    plan = machine.plan("docker")
    # The SDK asks for exactly DOCKER: `plugin install` is tried, fails (no network), so the
    # provider is built into our PULUMI_HOME and the installed CLI (with its host) is kept.
    assert f"plugin install resource docker {DOCKER}" in machine.calls.read_text()
    assert plan.cli == cli
    assert plan.build == ["docker"]
    assert plan.pulumi_home == machine.built.pulumi_home
    assert f"resource-docker-v{DOCKER}" in plan.summary()


def test_plugin_install_where_the_network_allows(machine: Machine) -> None:
    cli = machine.official(install=True)
    plan = machine.plan("openstack")
    assert (plan.cli, plan.build) == (cli, [])
    assert toolchain.has_plugin(machine.home / ".pulumi", "openstack", OPENSTACK)


def test_an_interrupted_plugin_install_does_not_count(machine: Machine) -> None:
    machine.official()
    binary = machine.plugin("docker", DOCKER)
    binary.parent.with_name(binary.parent.name + ".partial").touch()
    assert machine.plan("docker").build == ["docker"]


def test_no_cli_builds_only_what_the_stack_needs(machine: Machine) -> None:
    assert machine.plan("docker").build == ["pulumi", "language-python", "docker"]
    assert machine.plan("openstack").build == ["pulumi", "language-python", "openstack"]
    both = machine.plan("docker", "openstack")
    assert both.build == ["pulumi", "language-python", "docker", "openstack"]
    assert both.cli is None
    assert both.summary().startswith("pulumi: using our build from Go modules")
    env = toolchain.environment(both, machine.built, machine.env)
    assert env["PATH"].split(os.pathsep)[0] == str(machine.built.bin_dir)
    assert env["PULUMI_HOME"] == str(machine.built.pulumi_home)
    assert env["PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION"] == "true"


def test_our_own_build_on_path_is_not_an_install(machine: Machine) -> None:
    ours = machine.cli(machine.built.bin_dir)
    machine.env["PATH"] = f"{ours.parent}:{machine.env['PATH']}"
    assert machine.plan("docker").cli is None


@pytest.mark.parametrize("version", ["v2.25.2", "", "4.0.0"])
def test_only_a_working_3x_cli_counts(machine: Machine, version: str) -> None:
    machine.official(version)
    machine.plugin("docker", DOCKER)
    assert machine.plan("docker").cli is None


def test_a_cli_without_a_language_host_gets_ours_after_it_on_path(machine: Machine) -> None:
    cli = machine.official(host=False)
    machine.plugin("docker", DOCKER)
    plan = machine.plan("docker")
    assert (plan.cli, plan.build) == (cli, ["language-python"])
    path = toolchain.environment(plan, machine.built, machine.env)["PATH"].split(os.pathsep)
    assert path[:2] == [str(cli.parent), str(machine.built.bin_dir)]


def test_user_backend_and_passphrase_win(machine: Machine) -> None:
    plan = machine.plan("docker")
    defaults = toolchain.environment(plan, machine.built, machine.env)
    assert defaults["PULUMI_BACKEND_URL"].startswith("file://")
    assert defaults["PULUMI_CONFIG_PASSPHRASE"] == ""
    mine = {**machine.env, "PULUMI_BACKEND_URL": "s3://x", "PULUMI_CONFIG_PASSPHRASE": "p"}
    env = toolchain.environment(plan, machine.built, mine)
    assert (env["PULUMI_BACKEND_URL"], env["PULUMI_CONFIG_PASSPHRASE"]) == ("s3://x", "p")


def test_ensure_builds_only_when_something_is_missing(
    machine: Machine, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("PULUMI_HOME", "DOCKER_HOST"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", machine.env["HOME"])
    monkeypatch.setenv("PATH", machine.env["PATH"])
    asked: list[list[str]] = []

    def builder(targets: list[str], env: Mapping[str, str]) -> None:
        asked.append(targets)

    env = toolchain.ensure({"docker"}, build=builder)
    assert asked == [["pulumi", "language-python", "docker"]]
    assert env["PULUMI_HOME"] == str(machine.built.pulumi_home)

    cli = machine.official()
    machine.plugin("docker", DOCKER)
    asked.clear()
    env = toolchain.ensure({"docker"}, build=builder)
    assert asked == []
    assert env["PATH"].startswith(str(cli.parent) + os.pathsep)


FAKE_BUILD = """#!/bin/sh
echo "pulumi-toolchain: Go: /usr/bin/go (1.26.8)" >&2
echo "pulumi-toolchain: pulumi: downloading the modules of x" >&2
echo "go: downloading a v1" >&2
echo "go: downloading b v1" >&2
echo "pulumi-toolchain: pulumi: compiling and linking the CLI (cold: about 3 minutes)" >&2
echo "pulumi-toolchain: summary (key), 1s in all"
echo "  pulumi built"
exit {code}
"""


def fake_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int) -> Path:
    script = tmp_path / "build"
    script.write_text(FAKE_BUILD.format(code=code))
    script.chmod(0o755)
    monkeypatch.setattr(toolchain, "BUILD", script)
    monkeypatch.setenv("CALCLAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "pulumi-toolchain" / "build.log"


def test_a_cold_build_says_what_it_does_and_how_long_it_takes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    log = fake_build(tmp_path, monkeypatch, 0)
    toolchain.run_build(["pulumi", "language-python", "docker"], dict(os.environ))
    shown = capsys.readouterr().err
    assert "compiling pulumi CLI ~3:25, Python language host ~0:15, docker provider ~1:15" in shown
    assert "about 4:55 on 2 idle cores" in shown
    assert "[0:00] pulumi: downloading the modules of x" in shown
    assert "[0:00] pulumi: compiling and linking the CLI" in shown
    assert "go: downloading" not in shown  # counted, not listed
    assert "toolchain ready in 0:0" in shown
    assert "  pulumi built" in log.read_text()  # the summary is kept in the log


def test_a_warm_build_shows_nothing_and_a_failed_one_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "build"
    script.write_text("#!/bin/sh\necho 'pulumi-toolchain: summary (key), 0s in all'\n")
    script.chmod(0o755)
    monkeypatch.setattr(toolchain, "BUILD", script)
    monkeypatch.setenv("CALCLAB_CACHE", str(tmp_path / "cache"))
    toolchain.run_build(["pulumi"], dict(os.environ))
    assert capsys.readouterr().err == ""

    log = fake_build(tmp_path, monkeypatch, 1)
    with pytest.raises(toolchain.ToolchainError, match="build failed; full log: "):
        toolchain.run_build(["pulumi"], dict(os.environ))
    assert "go: downloading b v1" in capsys.readouterr().err  # the log's tail
    assert log.exists()
