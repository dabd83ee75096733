"""`lab image upload`'s decisions on plain data: hashes of a real file, a real qcow2 header,
which image to reuse or replace and under which name, and the messages a student reads.
The upload against a real Glance is tests/engine/test_image_testcloud.py."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from labctl.image import (
    CHUNK,
    DEFAULT_HASH,
    Digests,
    GlanceImage,
    ImageError,
    Reuse,
    Upload,
    _ProgressReader,
    content_name,
    differing_properties,
    file_digests,
    glance_message,
    glance_refusal,
    glance_value,
    guest_image_directory,
    image_properties,
    min_disk_gib,
    plan_upload,
    qcow2_virtual_size,
    resolve_source,
    same_content,
    upload_mismatch,
)
from labctl.paths import ROOT
from tests.helpers import require_tool

PROJECT = "p-student"
OTHER = "p-admin"


def digests_of(data: bytes) -> Digests:
    return Digests(
        len(data),
        {
            "md5": hashlib.md5(data, usedforsecurity=False).hexdigest(),
            DEFAULT_HASH: hashlib.sha512(data).hexdigest(),
        },
    )


LOCAL = digests_of(b"the new image")
OLD = digests_of(b"last week's image")


def glance(
    name: str,
    content: Digests | None,
    *,
    id: str = "",
    owner: str = PROJECT,
    status: str = "active",
    visibility: str = "private",
    protected: bool = False,
) -> GlanceImage:
    """An image as Glance lists it; `content` None: no data yet (queued)."""
    return GlanceImage(
        id=id or f"id-{name}-{owner}-{status}",
        name=name,
        status=status,
        owner=owner,
        visibility=visibility,
        protected=protected,
        os_hash_algo=DEFAULT_HASH if content else None,
        os_hash_value=content.hashes[DEFAULT_HASH] if content else None,
        checksum=content.hashes["md5"] if content else None,
    )


# --- hashes and the file -----------------------------------------------------------------------


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


# --- same content? -----------------------------------------------------------------------------


def test_same_content_compares_glance_hash_then_md5() -> None:
    assert same_content(LOCAL, glance("debian-12", LOCAL)) is True
    assert same_content(LOCAL, glance("debian-12", OLD)) is False
    md5_only = GlanceImage("i", "n", "active", PROJECT, "private", checksum=LOCAL.hashes["md5"])
    assert same_content(LOCAL, md5_only) is True
    assert same_content(LOCAL, glance("debian-12", None, status="queued")) is None


def test_upload_mismatch_names_each_hash_that_differs() -> None:
    assert upload_mismatch(LOCAL, glance("x", LOCAL)) is None
    damaged = glance("x", OLD)
    message = upload_mismatch(LOCAL, damaged)
    assert message is not None
    assert f"sha512 {OLD.hashes['sha512'][:16]}... in Glance" in message
    assert f"md5 {OLD.hashes['md5']} in Glance, {LOCAL.hashes['md5']} here" in message
    assert upload_mismatch(LOCAL, glance("x", None)) == "Glance reports no hash of the stored data"


# --- reuse, rename or replace --------------------------------------------------------------------


def test_a_free_name_is_uploaded_under() -> None:
    plan = plan_upload("debian-12", LOCAL, [], PROJECT)
    assert plan == Upload("debian-12", "no image is named debian-12 yet")


def test_the_one_identical_image_is_reused() -> None:
    mine = glance("debian-12", LOCAL)
    plan = plan_upload("debian-12", LOCAL, [mine, glance("debian-12-x", OLD)], PROJECT)
    assert isinstance(plan, Reuse)
    assert plan.image == mine
    assert plan.removes == ()


def test_an_identical_public_image_is_reused_too() -> None:
    public = glance("debian-12", LOCAL, owner=OTHER, visibility="public")
    plan = plan_upload("debian-12", LOCAL, [public], PROJECT)
    assert isinstance(plan, Reuse)
    assert plan.image == public


def test_other_content_under_the_name_goes_to_a_content_name_and_deletes_nothing() -> None:
    old = glance("debian-12", OLD)
    plan = plan_upload("debian-12", LOCAL, [old], PROJECT)
    assert isinstance(plan, Upload)
    assert (
        plan.name == f"debian-12-{LOCAL.hashes['sha512'][:8]}" == content_name("debian-12", LOCAL)
    )
    assert plan.removes == ()
    assert f"taken by {old.id} (active, private, this project's) with other content" in plan.why
    assert plan.why.endswith("(--replace takes over debian-12)")
    # a name held by the cloud's public image cannot be taken over: not suggested
    public = glance("debian-12", OLD, owner=OTHER, visibility="public")
    plan = plan_upload("debian-12", LOCAL, [public], PROJECT)
    assert plan.why.endswith("(or choose one with --name)")


def test_a_second_run_with_that_file_reuses_the_content_named_image() -> None:
    old = glance("debian-12", OLD)
    renamed = glance(content_name("debian-12", LOCAL), LOCAL)
    plan = plan_upload("debian-12", LOCAL, [old, renamed], PROJECT)
    assert isinstance(plan, Reuse)
    assert plan.image == renamed


def test_an_already_ambiguous_name_is_not_reused_even_with_an_identical_copy() -> None:
    # pulumi's lookup by name fails on two matches: reusing either would not help the student
    images = [glance("debian-12", LOCAL, id="a"), glance("debian-12", OLD, id="b")]
    plan = plan_upload("debian-12", LOCAL, images, PROJECT)
    assert isinstance(plan, Upload)
    assert plan.name == content_name("debian-12", LOCAL)


def test_an_unfinished_image_holds_the_name_but_a_deleted_one_does_not() -> None:
    queued = glance("debian-12", None, status="queued")
    assert plan_upload("debian-12", LOCAL, [queued], PROJECT).name == content_name(  # type: ignore[union-attr]
        "debian-12", LOCAL
    )
    gone = glance("debian-12", OLD, status="deleted")
    assert plan_upload("debian-12", LOCAL, [gone], PROJECT) == Upload(
        "debian-12", "no image is named debian-12 yet"
    )


def test_when_the_content_name_is_taken_too_the_student_is_told_to_choose() -> None:
    images = [glance("debian-12", OLD), glance(content_name("debian-12", LOCAL), OLD)]
    with pytest.raises(ImageError, match="choose another name with --name"):
        plan_upload("debian-12", LOCAL, images, PROJECT)


def test_replace_takes_over_the_name_and_deletes_the_projects_old_images_after() -> None:
    old = glance("debian-12", OLD)
    plan = plan_upload("debian-12", LOCAL, [old], PROJECT, replace=True)
    assert isinstance(plan, Upload)
    assert (plan.name, plan.removes) == ("debian-12", (old,))


def test_replace_keeps_an_identical_copy_and_removes_only_the_others() -> None:
    same, other = glance("debian-12", LOCAL, id="same"), glance("debian-12", OLD, id="other")
    plan = plan_upload("debian-12", LOCAL, [same, other], PROJECT, replace=True)
    assert isinstance(plan, Reuse)
    assert (plan.image, plan.removes) == (same, (other,))


def test_replace_never_deletes_what_the_project_does_not_own() -> None:
    public = glance("debian-12", OLD, owner=OTHER, visibility="public", id="pub")
    with pytest.raises(ImageError) as caught:
        plan_upload("debian-12", LOCAL, [public], PROJECT, replace=True)
    assert str(caught.value) == (
        "--replace cannot free the name debian-12: pub (active, public, another project's) is"
        f" not this project's; upload without --replace (it picks {content_name('debian-12', LOCAL)})"
        " or choose another --name"
    )
    protected = glance("debian-12", OLD, protected=True, id="prot")
    with pytest.raises(ImageError, match=r"prot .* is protected"):
        plan_upload("debian-12", LOCAL, [protected], PROJECT, replace=True)


# --- properties ----------------------------------------------------------------------------------


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


def test_reuse_updates_only_properties_that_differ() -> None:
    image = GlanceImage(
        "i", "n", "active", PROJECT, "private", properties={"os_distro": "debian", "min_ram": 0}
    )
    wanted: dict[str, int | str] = {"os_distro": "debian", "min_ram": 512, "os_version": "12"}
    assert differing_properties(wanted, image) == {"min_ram": 512, "os_version": "12"}


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


# --- messages --------------------------------------------------------------------------------------


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
