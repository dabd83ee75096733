"""`lab image upload` against the test cloud's real Glance, run as a student runs it (the
`lab` command in a subprocess, with the member's clouds.yaml).

The images are small real qcow2 files from `qemu-img create` (a few hundred KB), so the
upload, Glance's hashing and the checks are the real ones without the guest image's minutes.
Other engineers share the project: every image here has this run's own name, and only those
are counted or deleted.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from labctl.image.command import Source, send
from labctl.image.errors import ImageError
from labctl.image.glance import Glance
from labctl.image.local import Digests, file_digests
from labctl.image.plan import content_name
from labctl.paths import ROOT
from tests.helpers import require_tool

pytestmark = pytest.mark.testcloud

OPTIONS = ("--os-distro", "debian", "--os-version", "12", "--min-ram", "512")


def qcow2(path: Path, size: str) -> Path:
    qemu_img = require_tool("qemu-img", "apt-get install qemu-utils")
    subprocess.run([qemu_img, "create", "-q", "-f", "qcow2", str(path), size], check=True)
    return path


def digests(path: Path) -> Digests:
    return file_digests(path, ["md5", "sha512"])


def lab(clouds_yaml: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "OS_CLIENT_CONFIG_FILE": str(clouds_yaml),
        "OS_CLOUD": os.environ.get("OS_CLOUD", "testcloud"),
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.run(
        [sys.executable, "-m", "labctl", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def upload(clouds_yaml: Path, *args: str) -> tuple[str, str, str]:
    """(verb, name, id) from `lab image upload ARGS`, which must succeed."""
    result = lab(clouds_yaml, "image", "upload", *args)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    first, config_line = result.stdout.strip().splitlines()
    verb, name, image_id = first.split()
    assert config_line == f"pulumi config set image {name}"
    return verb, name, image_id


def images_named(conn: Any, name: str) -> list[Any]:
    return list(conn.image.images(name=name))


@pytest.fixture
def image_name(member: Any) -> Iterator[str]:
    name = f"upload-test-{uuid.uuid4().hex[:6]}"
    yield name
    for image in member.image.images(owner=member.current_project_id):
        if (image.name or "").startswith(name):
            member.image.delete_image(image)


def test_upload_reuse_new_content_and_replace(
    clouds_yaml: Path, member: Any, image_name: str, tmp_path: Path
) -> None:
    first = qcow2(tmp_path / "first.qcow2", "1G")
    verb, name, first_id = upload(clouds_yaml, "--file", str(first), "--name", image_name, *OPTIONS)
    assert (verb, name) == ("uploaded", image_name)
    image = member.image.get_image(first_id)
    assert image.status == "active"
    assert image.visibility == "private"
    assert image.owner == member.current_project_id
    assert (image.disk_format, image.container_format) == ("qcow2", "bare")
    assert (image.os_distro, image.os_version) == ("debian", "12")
    assert (image.min_disk, image.min_ram) == (1, 512)
    data = first.read_bytes()
    assert image.hash_algo == "sha512"
    assert image.hash_value == hashlib.sha512(data).hexdigest()
    assert image.checksum == hashlib.md5(data, usedforsecurity=False).hexdigest()
    assert image.size == len(data)

    # the same file again: the same image, no second copy
    assert upload(clouds_yaml, "--file", str(first), "--name", image_name, *OPTIONS) == (
        "reused",
        image_name,
        first_id,
    )
    assert [i.id for i in images_named(member, image_name)] == [first_id]

    # other content under the taken name: a content-named image beside it, the first untouched
    changed = qcow2(tmp_path / "changed.qcow2", "2G")
    renamed = content_name(image_name, digests(changed))
    result = lab(
        clouds_yaml, "image", "upload", "--file", str(changed), "--name", image_name, *OPTIONS
    )
    assert result.returncode == 0, result.stderr
    assert f"{image_name} is taken by {first_id}" in result.stderr
    verb, name, second_id = result.stdout.split()[:3]
    assert (verb, name) == ("uploaded", renamed)
    assert f"pulumi config set image {renamed}" in result.stdout
    assert [i.id for i in images_named(member, image_name)] == [first_id]
    second = member.image.get_image(second_id)
    assert second.min_disk == 2  # from the qcow2's size
    assert second.hash_value == hashlib.sha512(changed.read_bytes()).hexdigest()
    # and a second run with it finds that image
    assert upload(clouds_yaml, "--file", str(changed), "--name", image_name, *OPTIONS) == (
        "reused",
        renamed,
        second_id,
    )

    # --replace: the plain name gets the new content; the older image of that name goes
    verb, name, third_id = upload(
        clouds_yaml, "--file", str(changed), "--name", image_name, "--replace", *OPTIONS
    )
    assert (verb, name) == ("uploaded", image_name)
    assert [i.id for i in images_named(member, image_name)] == [third_id]
    assert member.image.find_image(first_id) is None
    assert member.image.get_image(second_id).status == "active"  # another name: kept


def test_replace_refuses_to_delete_the_clouds_public_image(
    clouds_yaml: Path, member: Any, tmp_path: Path
) -> None:
    """The test cloud's seed has a public `debian-12`: a student cannot take that name over."""
    before = {i.id for i in images_named(member, "debian-12")}
    assert any(i.visibility == "public" for i in images_named(member, "debian-12")), (
        "the test cloud's seed should hold a public debian-12"
    )
    path = qcow2(tmp_path / "d.qcow2", "1G")
    result = lab(clouds_yaml, "image", "upload", "--file", str(path), "--replace", *OPTIONS)
    assert result.returncode == 2, result.stderr
    assert "--replace cannot free the name debian-12:" in result.stderr
    assert "is not this project's" in result.stderr
    assert {i.id for i in images_named(member, "debian-12")} == before


def test_a_stored_image_that_is_not_the_file_is_deleted(
    member: Any, image_name: str, tmp_path: Path
) -> None:
    """As if the file changed between hashing and sending: Glance's hash disagrees with the
    one computed before, so the image is deleted and the error says what differed."""
    hashed = qcow2(tmp_path / "hashed.qcow2", "1G")
    sent = qcow2(tmp_path / "sent.qcow2", "3G")
    source = Source(
        sent, {"os_distro": "debian", "os_version": "12", "min_disk": 3, "min_ram": 0}, ""
    )
    before = digests(hashed)
    glance = Glance(member)
    with pytest.raises(ImageError) as caught:
        send(glance, source, image_name, before, Console(file=io.StringIO()), timeout=60)
    message = str(caught.value)
    assert message.startswith(f"image {image_name} ")
    assert f"in Glance is not {sent}: sha512 " in message
    assert "the image was deleted" in message
    assert images_named(member, image_name) == []


def test_an_unknown_cloud_is_named(clouds_yaml: Path, tmp_path: Path) -> None:
    path = qcow2(tmp_path / "d.qcow2", "1G")
    env_cloud = "no-such-cloud"
    result = subprocess.run(
        [sys.executable, "-m", "labctl", "image", "upload", "--file", str(path), *OPTIONS],
        cwd=ROOT,
        env={
            **os.environ,
            "OS_CLIENT_CONFIG_FILE": str(clouds_yaml),
            "OS_CLOUD": env_cloud,
            "PYTHONPATH": str(ROOT),
        },
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.startswith(f"lab: OpenStack: cannot configure cloud '{env_cloud}'")
