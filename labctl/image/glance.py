"""The few Glance v2 calls the upload needs, as the student (on their openstacksdk connection),
and Glance's refusals as one line that says what they mean for the student.

`lab image upload` imports this module only when it runs.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import IO, Any
from urllib.parse import urlencode

from labctl.image.errors import ImageError
from labctl.image.local import CHUNK
from labctl.image.plan import GlanceImage

FAILED = frozenset({"killed", "deleted", "pending_delete", "deactivated"})


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
    does its own duplicate-name handling, which is the decision plan.py makes.
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

    def upload(
        self, image: GlanceImage, handle: IO[bytes], size: int, advance: Callable[[int], None]
    ) -> None:
        """The file's `size` bytes as the image's data, read while they are sent; `advance`
        hears each chunk's length."""
        response = self._api.put(
            f"/images/{image.id}/file",
            data=_ProgressReader(handle, size, advance),
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
