"""`lab image upload`'s decision on plain data (labctl/image/plan.py): which image to reuse,
or under which name to upload, with --replace or without, and whether Glance's hashes say the
stored image is the file."""

from __future__ import annotations

import hashlib

import pytest

from labctl.image.errors import ImageError
from labctl.image.local import DEFAULT_HASH, Digests
from labctl.image.plan import (
    GlanceImage,
    Reuse,
    Upload,
    content_name,
    differing_properties,
    plan_upload,
    same_content,
    upload_mismatch,
)

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


# --- reuse: the properties -----------------------------------------------------------------------


def test_reuse_updates_only_properties_that_differ() -> None:
    image = GlanceImage(
        "i", "n", "active", PROJECT, "private", properties={"os_distro": "debian", "min_ram": 0}
    )
    wanted: dict[str, int | str] = {"os_distro": "debian", "min_ram": 512, "os_version": "12"}
    assert differing_properties(wanted, image) == {"min_ram": 512, "os_version": "12"}
