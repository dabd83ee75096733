"""Which images can run the calculator, judged by the Glance properties a cloud gives them.

The user data (lab/cloud_init.py) needs python3 at or above `GUEST_PYTHON_FLOOR` and systemd.
Glance's `os_distro` and `os_version` (the properties `lab image upload` sets, and most clouds'
own images carry) tell which distribution release an image is; the releases below are known
to lack one of the two. An image without those properties cannot be judged: a warning, not a
refusal, since a school's own image may well fit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lab.names import GUEST_PYTHON_FLOOR

FLOOR = ".".join(map(str, GUEST_PYTHON_FLOOR))
FIX = "lab image upload gives a Debian 12 image that fits"

# os_distro -> why no release of it fits.
NEVER_FIT = {
    "alpine": "Alpine has OpenRC, not systemd, and its cloud images carry no python3 to run"
    " the calculator",
    "cirros": "CirrOS is a test image with neither python3 nor systemd",
}
# os_distro -> (first fitting release, what the older ones lack).
RELEASE_FLOOR: dict[str, tuple[tuple[int, ...], str]] = {
    "debian": ((11,), "Debian 10 and older have python3 3.7 or older"),
    "ubuntu": ((20, 4), "Ubuntu 18.04 and older have python3 3.6 or older"),
    "centos": ((9,), "CentOS 8 and older have python3 3.6"),
    "rhel": ((9,), "RHEL 8 and older have python3 3.6"),
    "rocky": ((9,), "Rocky Linux 8 has python3 3.6"),
    "almalinux": ((9,), "AlmaLinux 8 has python3 3.6"),
}


@dataclass(frozen=True)
class Verdict:
    fit: bool | None  # None: cannot tell
    reason: str = ""


def judge(distro: str, version: str) -> Verdict:
    """Whether an image of `distro` `version` (Glance's spelling) can run the calculator."""
    distro = distro.strip().lower()
    if not distro:
        return Verdict(
            None,
            f"no os_distro/os_version property, so whether it has python3 {FLOOR}+ and systemd"
            f" cannot be checked; {FIX}",
        )
    if distro in NEVER_FIT:
        return Verdict(False, f"{NEVER_FIT[distro]}; {FIX}")
    if distro not in RELEASE_FLOOR:
        return Verdict(True)  # not known to be unfit
    floor, lacking = RELEASE_FLOOR[distro]
    release = _release(version)
    if release is None:
        return Verdict(
            None,
            f"os_version '{version}' is not a release number, so whether it has python3"
            f" {FLOOR}+ cannot be checked; {FIX}",
        )
    if release < floor:
        return Verdict(False, f"{lacking}, the calculator needs {FLOOR}+; {FIX}")
    return Verdict(True)


def _release(version: str) -> tuple[int, ...] | None:
    """'20.04' -> (20, 4), '12' -> (12,), '11.7' -> (11, 7); None for 'bookworm' or ''."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)*)\s*", version)
    return tuple(int(part) for part in match.group(1).split(".")) if match else None
