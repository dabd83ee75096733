"""User data: what it installs, that it is reproducible, and that cloud-init accepts it."""

from __future__ import annotations

import base64
import io
import os
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
    assert document["runcmd"][-1] == ["systemctl", "enable", "--now", "calculator-front.service"]


def test_needs_nothing_from_the_network_at_boot() -> None:
    document = yaml.safe_load(render_user_data("div", {"CALC_PORT": "50004"}))
    assert not {"packages", "package_update", "package_upgrade", "apt"} & set(document)
    commands = " ".join(" ".join(command) for command in document["runcmd"])
    for downloader in ("curl", "wget", "pip", "apt-get", "npm"):
        assert downloader not in commands


def test_stays_under_novas_user_data_limit_with_room_to_grow() -> None:
    encoded = base64.b64encode(render_user_data("front", FRONT_ENV).encode())
    assert len(encoded) < 0.8 * NOVA_USER_DATA_LIMIT


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
