"""`lab image upload`: the lab's guest image into Glance, with the student's own rights.

The image is `debian-N.qcow2` from `tools/guest-image/guest-image path --release N` (or any
qcow2 given with `--file`), uploaded as a private qcow2 image with the properties the cloud and
the program's preflight read (os_distro, os_version, min_disk, min_ram, and whatever else the
image's `properties.json` lists), then checked byte for byte: Glance's own hash of what it
stored must equal the local file's, or the image is deleted.

One rule decides what happens to a name that is already taken: the program's `image` key
names an image, and Pulumi's OpenStack provider refuses a name that more than one visible
image carries ("Found 2 images matching ..."). So this command never leaves two images with
one name behind it:

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

`plan_upload` and the helpers above it are pure decisions on plain data; `upload` is the typer
command, which imports openstacksdk only when it runs.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Annotated, Any
from urllib.parse import urlencode

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from labctl import cloud
from labctl.errors import LabError
from labctl.paths import ROOT

GUEST_IMAGE = ROOT / "tools" / "guest-image" / "guest-image"
GUEST_IMAGE_COMMAND = "tools/guest-image/guest-image"
RELEASES = ("11", "12", "13")
DEFAULT_RELEASE = "12"
# Glance's default os_hash_algo; a cloud configured for another one gets it computed as well.
DEFAULT_HASH = "sha512"
CHUNK = 1 << 20
GIB = 1 << 30
QCOW2_MAGIC = b"QFI\xfb"
# Every image must carry these: the scheduler reads min_*, the program's preflight os_distro.
REQUIRED = ("os_distro", "os_version", "min_disk", "min_ram")
# Glance's own integer attributes; every other property is a string.
INTEGER_ATTRIBUTES = frozenset({"min_disk", "min_ram"})
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
FAILED = frozenset({"killed", "deleted", "pending_delete", "deactivated"})
ACTIVE_TIMEOUT = 600.0


class ImageError(LabError):
    """An upload that cannot be done or went wrong; the message names what and what to do."""


# --- the local file --------------------------------------------------------------------------


@dataclass(frozen=True)
class Digests:
    size: int
    hashes: Mapping[str, str]  # hashlib algorithm name -> hex digest

    @property
    def tag(self) -> str:
        """Eight hex digits of the sha512: enough to tell a class's images apart by name."""
        return self.hashes[DEFAULT_HASH][:8]


def file_digests(
    path: Path, algorithms: Iterable[str], advance: Callable[[int], None] | None = None
) -> Digests:
    """Every hash in one read of the file, chunk by chunk (the image is hundreds of MB)."""
    hashers = {name: hashlib.new(name, usedforsecurity=False) for name in sorted(set(algorithms))}
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            size += len(chunk)
            for hasher in hashers.values():
                hasher.update(chunk)
            if advance is not None:
                advance(len(chunk))
    return Digests(size, {name: hasher.hexdigest() for name, hasher in hashers.items()})


def qcow2_virtual_size(path: Path) -> int:
    """The disk size a qcow2 file declares (bytes 24-31 of its header, big-endian)."""
    with path.open("rb") as handle:
        header = handle.read(32)
    if len(header) < 32 or header[:4] != QCOW2_MAGIC:
        raise ImageError(
            f"{path} is not a qcow2 image: convert it first"
            f" (qemu-img convert -O qcow2 {path} {path.stem}.qcow2)",
            exit_code=2,
        )
    (size,) = struct.unpack(">Q", header[24:32])
    return int(size)


def min_disk_gib(virtual_size: int) -> int:
    """Nova refuses a disk smaller than the image's virtual size, so that is the minimum."""
    return max(1, math.ceil(virtual_size / GIB))


# --- properties ------------------------------------------------------------------------------


def glance_value(key: str, value: Any, source: str) -> int | str:
    """A property as Glance stores it: min_* as integers, everything else as a string."""
    if key in INTEGER_ATTRIBUTES:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ImageError(f"{key} in {source}: {value!r} is not a whole number", exit_code=2)
        try:
            number = int(value)
        except ValueError:
            raise ImageError(
                f"{key} in {source}: {value!r} is not a whole number", exit_code=2
            ) from None
        if number < 0:
            raise ImageError(f"{key} in {source}: {number} is negative", exit_code=2)
        return number
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    raise ImageError(
        f"{key} in {source}: Glance properties are strings, not {type(value).__name__}",
        exit_code=2,
    )


def image_properties(
    inferred: Mapping[str, Any],
    from_file: Mapping[str, Any] | None,
    options: Mapping[str, Any | None],
    *,
    file_label: str,
) -> dict[str, int | str]:
    """What the image is tagged with: options over properties.json over what the file tells.

    A required property nobody gave is an error naming the options that would give it.
    """
    merged: dict[str, int | str] = {}
    for source, values in (
        ("the image file", inferred),
        (file_label, from_file or {}),
        ("the options", {k: v for k, v in options.items() if v is not None}),
    ):
        for key, value in values.items():
            merged[key] = glance_value(key, value, source)
    missing = [key for key in REQUIRED if key not in merged]
    if missing:
        flags = " ".join(f"--{key.replace('_', '-')} ..." for key in missing)
        raise ImageError(
            f"no {', '.join(missing)} for the image ({file_label} does not say): give {flags}",
            exit_code=2,
        )
    return merged


def read_properties_json(path: Path) -> dict[str, Any] | None:
    """The image directory's properties.json, or None when the build made none."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise ImageError(f"{path}: not readable JSON ({error})") from None
    if not isinstance(data, dict):
        raise ImageError(f"{path}: expected a JSON object of properties")
    return data


# --- what Glance holds -----------------------------------------------------------------------


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


def glance_message(text: str) -> str:
    """Glance's error body (HTML or JSON) as one short line."""
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict):
        inner = body.get("message") or body.get("error") or body
        text = json.dumps(inner) if not isinstance(inner, str) else inner
    plain = re.sub(r"<[^>]+>", " ", text)
    plain = " ".join(plain.split())
    # webob repeats the status line as title and heading
    plain = re.sub(r"^(\d{3} [A-Za-z ]+?) \1\b ?", r"\1: ", plain)
    return plain[:300] or "no detail"


def glance_refusal(action: str, status: int, text: str) -> str:
    """One line for a refused request, saying what it means for the student."""
    detail = f"HTTP {status}: {glance_message(text)}"
    if status == 413:
        return (
            f"Glance refused {action}: the project's image quota or the image store is full"
            f" ({detail}); delete images you no longer need (openstack image list --private)"
            " or ask for more"
        )
    if status == 403:
        return f"Glance does not allow this user {action} ({detail})"
    if status == 401:
        return f"Glance refused the credentials {action} ({detail}): check OS_CLOUD / openrc"
    return f"Glance answered {action} with {detail}"


# --- the Glance API, as the student ----------------------------------------------------------


class _ProgressReader:
    """The file as a request body: read in chunks while it is sent, counting progress."""

    def __init__(self, handle: IO[bytes], size: int, advance: Callable[[int], None]) -> None:
        self._handle = handle
        self._size = size
        self._advance = advance

    def read(self, amount: int = -1) -> bytes:
        # never the whole file at once, whoever asks
        chunk = self._handle.read(amount if 0 < amount <= CHUNK else CHUNK)
        self._advance(len(chunk))
        return chunk

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(CHUNK):
            yield chunk

    def __len__(self) -> int:  # requests sends Content-Length instead of chunks
        return self._size


class Glance:
    """The few Glance v2 calls the upload needs, on an authenticated openstacksdk connection.

    Plain REST on the SDK's image endpoint: its `create_image` adds properties of its own and
    does its own duplicate-name handling, which is the decision this module makes itself.
    """

    def __init__(self, conn: Any) -> None:
        self._api = conn.image
        self.project: str = conn.current_project_id

    def _ok(self, response: Any, action: str, expected: Iterable[int] = (200,)) -> Any:
        if response.status_code not in tuple(expected):
            raise ImageError(glance_refusal(action, response.status_code, response.text))
        return response

    def named(self, names: Iterable[str]) -> list[GlanceImage]:
        """Every image the user sees under these names (what the provider's lookup sees)."""
        found: dict[str, GlanceImage] = {}
        for name in dict.fromkeys(names):
            url: str | None = "/images?" + urlencode({"name": name, "limit": "200"})
            while url:
                body = self._ok(self._api.get(url), f"listing images named {name}").json()
                for entry in body.get("images", []):
                    found[entry["id"]] = GlanceImage.from_json(entry)
                next_link = body.get("next")
                url = next_link[next_link.index("/images") :] if next_link else None
        return list(found.values())

    def get(self, image_id: str) -> GlanceImage:
        response = self._ok(self._api.get(f"/images/{image_id}"), f"reading image {image_id}")
        return GlanceImage.from_json(response.json())

    def create(self, name: str, properties: Mapping[str, int | str]) -> GlanceImage:
        body = {
            "name": name,
            "disk_format": "qcow2",
            "container_format": "bare",
            "visibility": "private",
            **properties,
        }
        response = self._ok(
            self._api.post("/images", json=body), f"to create image {name}", expected=(201,)
        )
        return GlanceImage.from_json(response.json())

    def upload(self, image: GlanceImage, data: _ProgressReader) -> None:
        response = self._api.put(
            f"/images/{image.id}/file",
            data=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        self._ok(response, f"to store the data of {image.name}", expected=(204,))

    def update(self, image: GlanceImage, changes: Mapping[str, int | str]) -> None:
        patch = [
            {"op": "replace" if key in image.properties else "add", "path": f"/{key}", "value": v}
            for key, v in changes.items()
        ]
        response = self._api.patch(
            f"/images/{image.id}",
            data=json.dumps(patch),
            headers={"Content-Type": "application/openstack-images-v2.1-json-patch"},
        )
        self._ok(response, f"to update the properties of {image.name} {image.id}")

    def delete(self, image: GlanceImage) -> None:
        response = self._api.delete(f"/images/{image.id}")
        self._ok(response, f"to delete {image.name} {image.id}", expected=(204, 404))

    def wait_active(
        self, image: GlanceImage, timeout: float, sleep: Callable[[float], None] = time.sleep
    ) -> GlanceImage:
        deadline = time.monotonic() + timeout
        while True:
            current = self.get(image.id)
            if current.status == "active":
                return current
            if current.status in FAILED:
                raise ImageError(f"Glance marked image {image.name} {image.id} {current.status}")
            if time.monotonic() >= deadline:
                raise ImageError(
                    f"image {image.name} {image.id} still {current.status} after {timeout:g} s"
                    " (--timeout to wait longer); it was deleted, run the upload again"
                )
            sleep(2.0)


# --- the steps -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    path: Path
    properties: dict[str, int | str]
    default_name: str


def guest_image_directory(release: str) -> Path:
    build = f"{GUEST_IMAGE_COMMAND} build --release {release}"
    try:
        result = subprocess.run(
            [str(GUEST_IMAGE), "path", "--release", release],
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
    except OSError as error:
        raise ImageError(f"cannot run {GUEST_IMAGE_COMMAND}: {error}") from None
    if result.returncode == 3:
        raise ImageError(
            f"the Debian {release} guest image is not built: {build}"
            " (a few minutes), or upload another qcow2 with --file"
        )
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise ImageError(
            f"{GUEST_IMAGE_COMMAND} path --release {release} failed (exit"
            f" {result.returncode}): {reason}"
        )
    return Path(result.stdout.strip())


def resolve_source(
    release: str, file: Path | None, options: Mapping[str, Any | None], directory: Path | None
) -> Source:
    """The file to upload and its properties. `directory` is the guest image's (None with
    --file); the caller runs `guest-image path` to get it."""
    if file is not None:
        path, found, label = file, None, "--file's image"
        if not path.is_file():
            raise ImageError(f"no image file {path}", exit_code=2)
        inferred: dict[str, Any] = {}
    else:
        assert directory is not None
        path = directory / f"debian-{release}.qcow2"
        if not path.is_file():
            raise ImageError(
                f"no {path.name} in {directory}: rebuild it with"
                f" {GUEST_IMAGE_COMMAND} build --release {release}"
            )
        properties_file = directory / "properties.json"
        found = read_properties_json(properties_file)
        label = str(properties_file) if found is not None else f"{directory} (no properties.json)"
        # What asking for this release already says; properties.json, when there, has the last
        # word on it.
        inferred = {"os_distro": "debian", "os_version": release}
    inferred["min_disk"] = min_disk_gib(qcow2_virtual_size(path))
    properties = image_properties(inferred, found, options, file_label=label)
    return Source(path, properties, f"{properties['os_distro']}-{properties['os_version']}")


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def hash_file(path: Path, algorithms: Iterable[str], console: Console) -> Digests:
    size = path.stat().st_size
    with _progress(console) as progress:
        task = progress.add_task(f"hashing {path.name}", total=size)
        return file_digests(path, algorithms, lambda n: progress.advance(task, n))


def send(
    glance: Glance,
    source: Source,
    name: str,
    local: Digests,
    console: Console,
    timeout: float,
) -> GlanceImage:
    """Create, stream, wait for active, verify; the image is deleted if any step fails
    (including Ctrl-C), so no half-uploaded image keeps the name."""
    image = glance.create(name, source.properties)
    try:
        with _progress(console) as progress, source.path.open("rb") as handle:
            task = progress.add_task(f"uploading {name}", total=local.size)
            glance.upload(
                image, _ProgressReader(handle, local.size, lambda n: progress.advance(task, n))
            )
        stored = glance.wait_active(image, timeout)
        if stored.os_hash_algo and stored.os_hash_algo not in local.hashes:
            more = file_digests(source.path, [stored.os_hash_algo])
            local = Digests(local.size, {**local.hashes, **more.hashes})
        mismatch = upload_mismatch(local, stored)
        if mismatch is not None:
            raise ImageError(
                f"image {name} {image.id} in Glance is not {source.path}: {mismatch}"
                " (the file changed during the upload, or the transfer was damaged);"
                " the image was deleted, run the upload again"
            )
        return stored
    except BaseException as failure:
        try:
            glance.delete(image)
        except Exception as error:  # the first failure is the one to report
            failure.add_note(f"and deleting the unfinished image {image.id} failed: {error}")
        raise


def upload(
    release: Annotated[
        str, typer.Option(help=f"Debian release of the guest image: {', '.join(RELEASES)}.")
    ] = DEFAULT_RELEASE,
    name: Annotated[
        str | None,
        typer.Option(help="Image name in Glance (default: <os_distro>-<os_version>, debian-12)."),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            help="Upload this qcow2 instead of the guest image (give its --os-* and --min-*).",
            dir_okay=False,
        ),
    ] = None,
    os_distro: Annotated[str | None, typer.Option(help="os_distro property, e.g. debian.")] = None,
    os_version: Annotated[str | None, typer.Option(help="os_version property, e.g. 12.")] = None,
    min_disk: Annotated[
        int | None, typer.Option(help="Smallest disk, GiB (default: the qcow2's size).", min=0)
    ] = None,
    min_ram: Annotated[int | None, typer.Option(help="Smallest RAM, MiB.", min=0)] = None,
    replace: Annotated[
        bool,
        typer.Option(
            help="Take over the name: upload under it, then delete the project's older images"
            " of that name (default: upload under <name>-<hash> when the name holds other"
            " content)."
        ),
    ] = False,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for Glance to make the image active.")
    ] = ACTIVE_TIMEOUT,
) -> None:
    """Upload the lab's guest image to Glance (private, with its properties), or reuse it."""
    console = Console(stderr=True, highlight=False)
    if release not in RELEASES:
        raise ImageError(f"--release {release}: one of {', '.join(RELEASES)}", exit_code=2)
    options = {
        "os_distro": os_distro,
        "os_version": os_version,
        "min_disk": min_disk,
        "min_ram": min_ram,
    }
    directory = None if file is not None else guest_image_directory(release)
    source = resolve_source(release, file, options, directory)
    wanted = name or source.default_name
    glance = Glance(cloud.connect())
    try:
        _upload(glance, source, wanted, replace=replace, timeout=timeout, console=console)
    except cloud.sdk_errors() as error:
        raise ImageError(f"Glance failed: {cloud.first_line(error)}") from None


def _upload(
    glance: Glance, source: Source, wanted: str, *, replace: bool, timeout: float, console: Console
) -> None:
    local = hash_file(source.path, ("md5", DEFAULT_HASH), console)
    visible = glance.named([wanted, content_name(wanted, local)])
    extra = {i.os_hash_algo for i in visible if i.os_hash_algo} - set(local.hashes)
    if extra:
        more = file_digests(source.path, extra)
        local = Digests(local.size, {**local.hashes, **more.hashes})
    plan = plan_upload(wanted, local, visible, glance.project, replace=replace)
    console.print(f"lab image: {plan.why}")
    if isinstance(plan, Reuse):
        image = plan.image
        changes = differing_properties(source.properties, image)
        if changes and image.owner == glance.project:
            glance.update(image, changes)
            console.print(f"lab image: set {', '.join(sorted(changes))} on {image.id}")
        elif changes:
            console.print(
                f"lab image: warning: {image.id} is not this project's; its"
                f" {', '.join(sorted(changes))} differ from this file's and stay as they are"
            )
        typer.echo(f"reused {image.name} {image.id}")
    else:
        image = send(glance, source, plan.name, local, console, timeout)
        typer.echo(f"uploaded {image.name} {image.id}")
    for old in plan.removes:
        glance.delete(old)
        console.print(f"lab image: deleted the older {old.name} {old.id}")
    typer.echo(f"pulumi config set image {image.name}")


image_app = typer.Typer(help="The guest image in Glance.", no_args_is_help=True)
image_app.command("upload")(upload)
