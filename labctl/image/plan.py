"""What to do with the file, given what Glance holds: reuse an image, or upload under which
name. Pure decisions on plain data (`GlanceImage`, as Glance lists an image).

One rule decides what happens to a name that is already taken: the program's `image` key
names an image, and Pulumi's OpenStack provider refuses a name that more than one visible
image carries ("Found 2 images matching ..."). So `lab image upload` never leaves two images
with one name behind it:

- the name is free: upload under it;
- exactly one image carries it, active and with the same content: reuse it (no second copy);
- it is taken otherwise (other content, several images, an unfinished upload): upload under
  `<name>-<first 8 hex digits of the file's sha512>` instead, a name that says which content
  it holds, so a second run with the same file reuses that image too. Nothing is deleted by
  default: in a class sharing one project, the image under the plain name may run a
  classmate's VMs;
- `--replace`: the student wants the plain name (their stack file says `debian-12`): upload
  under it, check it, and only then delete the project's other images of that name; images
  the project does not own (a public one of the cloud) are never deleted: refused up front.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from labctl.image.errors import ImageError
from labctl.image.local import Digests

# Fields of Glance's image JSON that are not properties a user sets.
_SYSTEM_FIELDS = frozenset(
    {
        "id",
        "name",
        "status",
        "owner",
        "visibility",
        "protected",
        "os_hash_algo",
        "os_hash_value",
        "checksum",
        "size",
        "virtual_size",
        "created_at",
        "updated_at",
        "disk_format",
        "container_format",
        "tags",
        "self",
        "file",
        "schema",
        "locations",
        "direct_url",
        "os_hidden",
        "stores",
    }
)
GONE = frozenset({"deleted", "pending_delete"})


@dataclass(frozen=True)
class GlanceImage:
    id: str
    name: str
    status: str
    owner: str
    visibility: str
    protected: bool = False
    os_hash_algo: str | None = None
    os_hash_value: str | None = None
    checksum: str | None = None
    properties: Mapping[str, Any] = field(default_factory=dict)  # min_* included

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> GlanceImage:
        """From Glance's own JSON for one image (GET /v2/images/ID)."""
        properties = {k: v for k, v in body.items() if k not in _SYSTEM_FIELDS}
        return cls(
            id=str(body["id"]),
            name=str(body.get("name") or ""),
            status=str(body.get("status") or ""),
            owner=str(body.get("owner") or ""),
            visibility=str(body.get("visibility") or ""),
            protected=bool(body.get("protected")),
            os_hash_algo=body.get("os_hash_algo"),
            os_hash_value=body.get("os_hash_value"),
            checksum=body.get("checksum"),
            properties=properties,
        )

    def describe(self, project: str) -> str:
        whose = "this project's" if self.owner == project else "another project's"
        return f"{self.id} ({self.status}, {self.visibility}, {whose})"


def same_content(local: Digests, image: GlanceImage) -> bool | None:
    """Whether Glance's hash of the image equals the file's; None when Glance has none yet."""
    if image.os_hash_algo and image.os_hash_value and image.os_hash_algo in local.hashes:
        return local.hashes[image.os_hash_algo] == image.os_hash_value
    if image.checksum and "md5" in local.hashes:
        return local.hashes["md5"] == image.checksum
    return None


def upload_mismatch(local: Digests, image: GlanceImage) -> str | None:
    """Why the stored image is not the file, or None when every hash Glance reports agrees."""
    problems = []
    algo = image.os_hash_algo
    if algo and image.os_hash_value and algo in local.hashes:
        if image.os_hash_value != local.hashes[algo]:
            problems.append(
                f"{algo} {image.os_hash_value[:16]}... in Glance, {local.hashes[algo][:16]}... here"
            )
    elif algo:
        problems.append(f"Glance hashed with {algo}, which was not computed here")
    if image.checksum and image.checksum != local.hashes.get("md5"):
        problems.append(f"md5 {image.checksum} in Glance, {local.hashes.get('md5')} here")
    if not (algo or image.checksum):
        problems.append("Glance reports no hash of the stored data")
    return "; ".join(problems) or None


def content_name(name: str, local: Digests) -> str:
    return f"{name}-{local.tag}"


def differing_properties(
    wanted: Mapping[str, int | str], image: GlanceImage
) -> dict[str, int | str]:
    return {k: v for k, v in wanted.items() if str(image.properties.get(k)) != str(v)}


@dataclass(frozen=True)
class Reuse:
    image: GlanceImage
    why: str
    # With --replace: the project's other images of the name, deleted so that it is unique.
    removes: tuple[GlanceImage, ...] = ()


@dataclass(frozen=True)
class Upload:
    name: str
    why: str
    removes: tuple[GlanceImage, ...] = ()  # deleted once the new image is active and checked


def _identical(local: Digests, images: Sequence[GlanceImage]) -> list[GlanceImage]:
    return [i for i in images if i.status == "active" and same_content(local, i)]


def _taken_by(images: Sequence[GlanceImage], project: str) -> str:
    return ", ".join(image.describe(project) for image in images)


def plan_upload(
    name: str,
    local: Digests,
    visible: Sequence[GlanceImage],
    project: str,
    *,
    replace: bool = False,
) -> Reuse | Upload:
    """What to do with the file, given every image the student sees named `name` or
    `content_name(name, local)` (the module's docstring gives the rule)."""

    def named(wanted: str) -> list[GlanceImage]:
        return [i for i in visible if i.name == wanted and i.status not in GONE]

    holders = named(name)
    if not holders:
        return Upload(name, f"no image is named {name} yet")
    identical = _identical(local, holders)
    if len(holders) == 1 and identical:
        return Reuse(identical[0], f"{name} {identical[0].id} already holds this file")
    if replace:
        foreign = [i for i in holders if i.owner != project]
        protected = [i for i in holders if i.protected]
        if foreign or protected:
            reason = "not this project's" if foreign else "protected"
            raise ImageError(
                f"--replace cannot free the name {name}: {_taken_by(foreign or protected, project)}"
                f" is {reason}; upload without --replace (it picks {content_name(name, local)})"
                " or choose another --name",
                exit_code=2,
            )
        if identical:
            keep = identical[0]
            others = tuple(i for i in holders if i.id != keep.id)
            return Reuse(keep, f"{name} {keep.id} already holds this file", removes=others)
        return Upload(name, f"replacing {_taken_by(holders, project)}", removes=tuple(holders))
    alternative = content_name(name, local)
    taken = f"{name} is taken by {_taken_by(holders, project)}"
    if len(holders) == 1 and same_content(local, holders[0]) is False:
        taken += " with other content"
    alternatives = named(alternative)
    if not alternatives:
        replaceable = all(i.owner == project and not i.protected for i in holders)
        other_way = f"--replace takes over {name}" if replaceable else "or choose one with --name"
        return Upload(
            alternative,
            f"{taken}; a second image named {name} would make the name ambiguous for pulumi,"
            f" so this file goes in as {alternative} ({other_way})",
        )
    same = _identical(local, alternatives)
    if len(alternatives) == 1 and same:
        return Reuse(same[0], f"{taken}; {alternative} {same[0].id} already holds this file")
    raise ImageError(
        f"{taken}, and {alternative} is taken too, by {_taken_by(alternatives, project)}:"
        " choose another name with --name",
        exit_code=2,
    )
