"""User data: what it installs, that it is reproducible, and that cloud-init accepts it."""

from __future__ import annotations

import base64
import gzip
import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from lab.cloud_init import (
    NOVA_USER_DATA_LIMIT,
    AppFile,
    app_files,
    render_user_data,
)
from tests.helpers import require_tool

FRONT_ENV = {
    "CALC_LISTEN_HOST": "0.0.0.0",
    "CALC_PORT": "50000",
    "CALC_SUM_URL": "http://192.168.2.11:50001",
}


def archive_members(user_data: str) -> dict[str, bytes]:
    document = yaml.safe_load(user_data)
    (archive,) = [f for f in document["write_files"] if f["path"].endswith(".tar.gz")]
    assert archive["encoding"] == "b64"
    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(archive["content"]))) as tar:
        return {
            member.name: tar.extractfile(member).read()  # type: ignore[union-attr]
            for member in tar.getmembers()
        }


def test_ships_every_runtime_file_of_the_calculator_and_nothing_else() -> None:
    members = archive_members(render_user_data("front", FRONT_ENV))
    shipped = {name.removeprefix("calculator/") for name in members}
    expected = {f.relative_path for f in app_files()}
    assert shipped == expected
    assert "__main__.py" in shipped
    assert not {name for name in shipped if name.endswith((".pyc", "README.md", "Dockerfile"))}
    app_dir = Path(__file__).resolve().parents[2] / "apps" / "calculator"
    assert members["calculator/__main__.py"] == (app_dir / "__main__.py").read_bytes()


def test_rendering_is_byte_for_byte_reproducible() -> None:
    # Any drift here would make every `pulumi up` replace all five servers.
    assert render_user_data("sum", {"CALC_PORT": "50001"}) == render_user_data(
        "sum", {"CALC_PORT": "50001"}
    )


def test_unit_runs_the_role_unprivileged_with_its_environment() -> None:
    document = yaml.safe_load(render_user_data("front", FRONT_ENV, python="/usr/bin/python3.11"))
    (unit,) = [f for f in document["write_files"] if f["path"].endswith(".service")]
    content = unit["content"]
    assert "ExecStart=/usr/bin/python3.11 -m calculator front" in content
    assert "Environment=CALC_SUM_URL=http://192.168.2.11:50001" in content
    assert "Environment=PYTHONPATH=/opt/calculator-lab" in content
    assert "DynamicUser=yes" in content
    script = start_script_of(render_user_data("front", FRONT_ENV))
    assert "unit=calculator-front.service" in script
    assert 'systemctl enable --now "$unit"' in script


def test_needs_nothing_from_the_network_at_boot() -> None:
    document = yaml.safe_load(render_user_data("div", {"CALC_PORT": "50004"}))
    assert not {"packages", "package_update", "package_upgrade", "apt"} & set(document)
    commands = " ".join(" ".join(command) for command in document["runcmd"])
    for downloader in ("curl", "wget", "pip", "apt-get", "npm"):
        assert downloader not in commands


def test_stays_under_novas_user_data_limit_with_room_to_grow() -> None:
    # 8 KiB of room: the front end's is ~54 KB since the calculator runs on Python 3.8 (its
    # compat module) and the user data checks its prerequisites (the start script, ~1 KB
    # encoded); the former 80 % bound (52,428 bytes) no longer held after those two.
    encoded = base64.b64encode(render_user_data("front", FRONT_ENV).encode())
    assert len(encoded) < NOVA_USER_DATA_LIMIT - 8192


def test_an_oversized_package_is_refused_with_a_clear_message() -> None:
    huge = (AppFile("__main__.py", os.urandom(60_000)),)  # random bytes do not compress
    with pytest.raises(ValueError, match="over Nova's limit"):
        render_user_data("front", FRONT_ENV, files=huge)


def cloud_init_schema(document: str, path: Path) -> subprocess.CompletedProcess[str]:
    """The real `cloud-init schema` check of `document`, written to `path` first."""
    cloud_init = require_tool("cloud-init", "apt-get install cloud-init")
    path.write_text(document)
    return subprocess.run(
        [cloud_init, "schema", "--config-file", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("role", ["front", "sum", "div"])
def test_real_cloud_init_accepts_the_user_data(role: str, tmp_path: Path) -> None:
    user_data = render_user_data(role, FRONT_ENV if role == "front" else {"CALC_PORT": "1"})
    result = cloud_init_schema(user_data, tmp_path / "user-data.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Valid cloud-config" in result.stdout


def test_real_cloud_init_rejects_a_broken_document(tmp_path: Path) -> None:
    # Proves the schema check above can fail.
    broken = "#cloud-config\nwrite_files:\n  - path: 3\n    bogus: true\n"
    result = cloud_init_schema(broken, tmp_path / "broken.yaml")
    assert result.returncode != 0


# --- the start script: its checks, and the one console line each outcome writes ---------------


def start_script_of(user_data: str) -> str:
    document = yaml.safe_load(user_data)
    (script,) = [f for f in document["write_files"] if "/start-" in f["path"]]
    assert script["encoding"] == "gz+b64"
    assert document["runcmd"] == [["sh", script["path"]]]
    return gzip.decompress(base64.b64decode(script["content"])).decode()


def run_start_script(script: str, tmp_path: Path, *, systemd: bool = True) -> tuple[str, int]:
    """The real script under the host's sh, with a file standing in for /dev/console and, if
    not `systemd`, a missing directory for /run/systemd/system. Returns the console's text."""
    console = tmp_path / "console"
    console.touch()
    script = script.replace("/dev/console", str(console))
    if not systemd:
        script = script.replace("/run/systemd/system", str(tmp_path / "no-systemd"))
    result = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60)
    assert result.stdout == "", "the console line went to stdout although there is a console"
    return console.read_text(), result.returncode


def test_start_script_is_shipped_and_run_before_the_unit(tmp_path: Path) -> None:
    script = start_script_of(render_user_data("sum", {"CALC_PORT": "50001"}))
    assert script.startswith("#!/bin/sh\n")
    # the checks come before anything is unpacked or started
    assert script.index("/run/systemd/system") < script.index("tar -xzf")
    assert script.index("tar -xzf") < script.index("systemctl daemon-reload")
    subprocess.run(["sh", "-n"], input=script, text=True, check=True)


def test_missing_python_is_one_console_line_naming_role_and_fix(tmp_path: Path) -> None:
    script = start_script_of(
        render_user_data("sum", {"CALC_PORT": "50001"}, python="/usr/bin/python3.7")
    )
    console, code = run_start_script(script, tmp_path)
    assert code == 1
    assert console == (
        "calculator-lab sum: cannot start: no python3 at /usr/bin/python3.7, the calculator"
        " needs Python 3.8 or newer; use an image with Python 3.8+ (Debian 11+,"
        " Ubuntu 20.04+): lab image upload\n"
    )


def test_too_old_or_not_a_python_is_refused(tmp_path: Path) -> None:
    old = tmp_path / "python3.7"
    # A real Python that reports 3.7: it runs the script's own question (`-c CODE`) with
    # sys.version_info replaced, so the script's comparison is what gets tested.
    real = shutil.which("python3")
    assert real is not None
    old.write_text(
        f'#!/bin/sh\nexec {real} -c \'import sys; sys.version_info = (3, 7, 9, "final", 0);'
        ' exec(sys.argv[1])\' "$2"\n'
    )
    old.chmod(0o755)
    console, code = run_start_script(
        start_script_of(render_user_data("div", {"CALC_PORT": "50004"}, python=str(old))),
        tmp_path,
    )
    assert (code, console.count("\n")) == (1, 1)
    assert console.startswith(f"calculator-lab div: cannot start: python3 at {old} is 3.7, ")
    # an executable that is not a Python at all (exits 0 and prints nothing)
    console, code = run_start_script(
        start_script_of(render_user_data("div", {"CALC_PORT": "50004"}, python="/bin/true")),
        tmp_path,
    )
    assert code == 1
    assert "python3 at /bin/true is not a Python, " in console


def test_no_systemd_is_refused_after_python_passes(tmp_path: Path) -> None:
    python = shutil.which("python3")
    assert python is not None
    script = start_script_of(render_user_data("mul", {"CALC_PORT": "50003"}, python=python))
    console, code = run_start_script(script, tmp_path, systemd=False)
    assert code == 1
    assert console == (
        "calculator-lab mul: cannot start: systemd is not the init system (the calculator is"
        " a systemd unit); use an image with systemd (Debian, Ubuntu): lab image upload\n"
    )


def test_success_line_names_the_port_it_probes() -> None:
    script = start_script_of(render_user_data("front", FRONT_ENV))
    assert "socket.create_connection(('127.0.0.1', 50000), 2)" in script
    assert 'say "serving on :50000"' in script
