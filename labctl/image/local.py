"""The file to upload, as the upload sees it: its size and every hash Glance may compare, in
one read; and the disk size its qcow2 header declares, which is the image's smallest disk.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from labctl.image.errors import ImageError

# Glance's default os_hash_algo; a cloud configured for another one gets it computed as well.
DEFAULT_HASH = "sha512"
CHUNK = 1 << 20
GIB = 1 << 30
QCOW2_MAGIC = b"QFI\xfb"


@dataclass(frozen=True)
class Digests:
    size: int
    hashes: Mapping[str, str]  # hashlib algorithm name -> hex digest

    @property
    def tag(self) -> str:
        """Eight hex digits of the sha512: enough to tell a class's images apart by name."""
        return self.hashes[DEFAULT_HASH][:8]

    def including(self, path: Path, algorithms: Iterable[str]) -> Digests:
        """These digests and those of `algorithms` it lacks (another read of `path` if any)."""
        missing = set(algorithms) - set(self.hashes)
        if not missing:
            return self
        more = file_digests(path, missing)
        return Digests(self.size, {**self.hashes, **more.hashes})


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
