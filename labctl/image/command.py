"""`lab image upload`: the lab's guest image into Glance, with the student's own rights.

The image is `debian-N.qcow2` from `tools/guest-image/guest-image path --release N` (or any
qcow2 given with `--file`), uploaded as a private qcow2 image with the properties the cloud and
the program's preflight read (properties.py), then checked byte for byte: Glance's own hash of
what it stored must equal the local file's, or the image is deleted. Whether it is uploaded at
all, and under which name, is plan.py's decision.

The steps, in order: find the file and its properties, hash it, ask Glance what the names hold,
plan, then reuse or send. The Glance client (glance.py, on openstacksdk's connection) is
imported only when the command runs.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

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
from labctl.image.errors import ImageError
from labctl.image.local import (
    DEFAULT_HASH,
    Digests,
    file_digests,
    min_disk_gib,
    qcow2_virtual_size,
)
from labctl.image.plan import (
    GlanceImage,
    Reuse,
    content_name,
    differing_properties,
    plan_upload,
    upload_mismatch,
)
from labctl.image.properties import image_properties, read_properties_json
from labctl.paths import ROOT

if TYPE_CHECKING:
    from labctl.image.glance import Glance

GUEST_IMAGE = ROOT / "tools" / "guest-image" / "guest-image"
GUEST_IMAGE_COMMAND = "tools/guest-image/guest-image"
RELEASES = ("11", "12", "13")
DEFAULT_RELEASE = "12"
ACTIVE_TIMEOUT = 600.0


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
            glance.upload(image, handle, local.size, lambda n: progress.advance(task, n))
        stored = glance.wait_active(image, timeout)
        if stored.os_hash_algo:
            local = local.including(source.path, [stored.os_hash_algo])
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
    from labctl.image.glance import Glance  # the client only when the command runs

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
    local = local.including(source.path, {i.os_hash_algo for i in visible if i.os_hash_algo})
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
