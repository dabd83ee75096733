"""`lab image upload` apart from its decision (tests/unit/test_image_plan.py): hashes of a real
file and a real qcow2 header, the streamed upload's chunks, the image's properties, the file and
properties the command finds, Glance's refusals as a student reads them, and the command itself.
The upload against a real Glance is tests/testcloud/test_image_upload.py."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from labctl.image.command import guest_image_directory, resolve_source
from labctl.image.errors import ImageError
from labctl.image.glance import _ProgressReader, glance_message, glance_refusal
from labctl.image.local import CHUNK, file_digests, min_disk_gib, qcow2_virtual_size
from labctl.image.properties import glance_value, image_properties
from labctl.paths import ROOT
from tests.helpers import require_tool

# --- hashes and the file --------------------------------------------------------------------------


def test_file_digests_hash_the_whole_file_in_one_pass(tmp_path: Path) -> None:
    data = os.urandom(CHUNK * 2 + 12345)  # more than one chunk, and a partial last one
    path = tmp_path / "disk.qcow2"
    path.write_bytes(data)
    seen: list[int] = []
    digests = file_digests(path, ["md5", "sha512", "sha256"], seen.append)
    assert digests.size == len(data)
    assert digests.hashes == {
        "md5": hashlib.md5(data, usedforsecurity=False).hexdigest(),
        "sha256": hashlib.sha256(data).hexdigest(),
        "sha512": hashlib.sha512(data).hexdigest(),
    }
    assert sum(seen) == len(data)
    assert max(seen) <= CHUNK
    assert digests.tag == hashlib.sha512(data).hexdigest()[:8]


def test_qcow2_virtual_size_reads_a_real_header(tmp_path: Path) -> None:
    qemu_img = require_tool("qemu-img", "apt-get install qemu-utils")
    path = tmp_path / "disk.qcow2"
    subprocess.run([qemu_img, "create", "-q", "-f", "qcow2", str(path), "2500M"], check=True)
    assert qcow2_virtual_size(path) == 2500 * 2**20
    assert min_disk_gib(qcow2_virtual_size(path)) == 3  # rounded up: 2 GiB would not fit


def test_a_file_that_is_not_qcow2_is_refused_with_the_conversion(tmp_path: Path) -> None:
    path = tmp_path / "disk.raw"
    path.write_bytes(b"\0" * 4096)
    with pytest.raises(ImageError, match=r"not a qcow2 image.*qemu-img convert -O qcow2"):
        qcow2_virtual_size(path)


# --- properties -----------------------------------------------------------------------------------


def test_properties_options_win_over_properties_json_over_the_file() -> None:
    properties = image_properties(
        {"os_distro": "debian", "os_version": "12", "min_disk": 1},
        {"os_version": "12", "min_disk": 2, "min_ram": "512", "hw_rng_model": "virtio"},
        {"min_ram": 1024, "os_distro": None},
        file_label="properties.json",
    )
    assert properties == {
        "os_distro": "debian",
        "os_version": "12",
        "min_disk": 2,
        "min_ram": 1024,
        "hw_rng_model": "virtio",
    }


def test_a_missing_property_names_the_options_that_give_it() -> None:
    with pytest.raises(ImageError) as caught:
        image_properties({"min_disk": 1}, None, {"os_distro": "ubuntu"}, file_label="FILE")
    assert str(caught.value) == (
        "no os_version, min_ram for the image (FILE does not say):"
        " give --os-version ... --min-ram ..."
    )


def test_glance_values_are_integers_for_min_and_strings_otherwise() -> None:
    assert glance_value("min_ram", "512", "x") == 512
    assert glance_value("os_version", 12, "x") == "12"
    assert glance_value("hw_qemu_guest_agent", True, "x") == "true"
    with pytest.raises(ImageError, match=r"min_disk in properties\.json: 'big' is not a whole"):
        glance_value("min_disk", "big", "properties.json")
    with pytest.raises(ImageError, match="min_disk in x: -1 is negative"):
        glance_value("min_disk", -1, "x")
    with pytest.raises(ImageError, match="properties are strings, not dict"):
        glance_value("os_distro", {"a": 1}, "x")


# --- the file and properties the command finds ----------------------------------------------------


def qcow2(path: Path, size: str = "1G") -> Path:
    qemu_img = require_tool("qemu-img", "apt-get install qemu-utils")
    subprocess.run([qemu_img, "create", "-q", "-f", "qcow2", str(path), size], check=True)
    return path


def test_the_guest_image_directory_gives_file_and_properties(tmp_path: Path) -> None:
    qcow2(tmp_path / "debian-13.qcow2", "2G")
    (tmp_path / "properties.json").write_text(
        json.dumps({"os_distro": "debian", "os_version": "13", "min_disk": 2, "min_ram": 512})
    )
    source = resolve_source("13", None, {}, tmp_path)
    assert source.path == tmp_path / "debian-13.qcow2"
    assert source.default_name == "debian-13"
    assert source.properties == {
        "os_distro": "debian",
        "os_version": "13",
        "min_disk": 2,
        "min_ram": 512,
    }


def test_without_properties_json_the_missing_ram_is_asked_for(tmp_path: Path) -> None:
    qcow2(tmp_path / "debian-12.qcow2")
    with pytest.raises(ImageError, match=r"\(no properties.json\) does not say\): give --min-ram"):
        resolve_source("12", None, {}, tmp_path)
    source = resolve_source("12", None, {"min_ram": 512}, tmp_path)
    assert source.properties == {
        "os_distro": "debian",
        "os_version": "12",
        "min_disk": 1,
        "min_ram": 512,
    }


def test_a_missing_release_file_names_the_build_command(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as caught:
        resolve_source("11", None, {}, tmp_path)
    assert str(caught.value) == (
        f"no debian-11.qcow2 in {tmp_path}: rebuild it with"
        " tools/guest-image/guest-image build --release 11"
    )


def test_any_qcow2_with_file_takes_its_name_from_its_properties(tmp_path: Path) -> None:
    path = qcow2(tmp_path / "noble.qcow2", "3584M")
    options = {"os_distro": "ubuntu", "os_version": "24.04", "min_ram": 1024}
    source = resolve_source("12", path, options, None)
    assert source.default_name == "ubuntu-24.04"
    assert source.properties["min_disk"] == 4
    with pytest.raises(ImageError, match="no image file"):
        resolve_source("12", tmp_path / "nope.qcow2", options, None)


def test_an_unbuilt_guest_image_names_the_build_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALCLAB_CACHE", str(tmp_path))  # nothing is built in an empty cache
    with pytest.raises(ImageError) as caught:
        guest_image_directory("12")
    assert str(caught.value).startswith(
        "the Debian 12 guest image is not built: tools/guest-image/guest-image build --release 12"
    )


# --- Glance, as the student: the streamed data, the refusals --------------------------------------


def test_the_progress_reader_streams_in_bounded_chunks(tmp_path: Path) -> None:
    data = os.urandom(CHUNK + 10)
    path = tmp_path / "f"
    path.write_bytes(data)
    sent: list[int] = []
    with path.open("rb") as handle:
        reader = _ProgressReader(handle, len(data), sent.append)
        assert len(reader) == len(data)
        assert len(reader.read()) == CHUNK  # "everything" still comes one chunk at a time
        assert b"".join(reader) == data[CHUNK:]
    assert sum(sent) == len(data)


def test_glance_refusals_say_what_they_mean() -> None:
    webob = (
        "<html><head><title>413 Request Entity Too Large</title></head><body><h1>413 Request"
        " Entity Too Large</h1>Denying attempt to upload image because it exceeds the quota:"
        " The size of the data 209715200 will exceed the limit. 10485760 bytes remaining."
        "<br /><br /></body></html>"
    )
    assert glance_message(webob) == (
        "413 Request Entity Too Large: Denying attempt to upload image because it exceeds the"
        " quota: The size of the data 209715200 will exceed the limit. 10485760 bytes remaining."
    )
    message = glance_refusal("to store the data of debian-12", 413, webob)
    assert message.startswith(
        "Glance refused to store the data of debian-12: the project's image quota or the image"
        " store is full (HTTP 413: 413 Request Entity Too Large: Denying attempt"
    )
    assert glance_refusal("to create image x", 403, '{"message": "Forbidden: policy"}') == (
        "Glance does not allow this user to create image x (HTTP 403: Forbidden: policy)"
    )


# --- the command ----------------------------------------------------------------------------------


def test_lab_help_does_not_import_openstacksdk() -> None:
    probe = "import sys, labctl.cli; print(sorted(m for m in sys.modules if m.split('.')[0] in ('openstack', 'keystoneauth1')))"
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.stdout.strip() == "[]"


def test_without_credentials_the_command_says_so(tmp_path: Path) -> None:
    path = qcow2(tmp_path / "disk.qcow2")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    result = subprocess.run(
        [sys.executable, "-m", "labctl", "image", "upload", "--file", str(path),
         "--os-distro", "debian", "--os-version", "12", "--min-ram", "512"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={**env, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "lab: no OpenStack credentials: set OS_CLOUD to your cloud in clouds.yaml, or source"
        " your project's openrc (OS_AUTH_URL, OS_USERNAME, ...)"
    )
