"""A guest VM under QEMU (TCG) on a data plane's tap, booted as Nova's libvirt driver boots a
server, and its files read back from its disk afterwards.

- Like a Nova guest: an i440fx machine ("pc"), SeaBIOS booting the image's own GRUB from a
  virtio disk (no -kernel), the user data on a `config-2` ISO 9660 config drive on the IDE
  CD-ROM, the SMBIOS identity of an OpenStack Nova guest (`configdrive.py`), the console on
  the first serial port (Nova's console log). cloud-init's ds-identify then picks ConfigDrive
  as on a real cloud.
- The disk is a qcow2 overlay on the cached image, grown to the flavour's size as Nova grows
  it, so the image itself is never written and cloud-init's growpart has room to grow into.
- TCG's translation cache defaults to 1 GiB in QEMU 7.2 and gets used: `tb-size` bounds it
  (384 MiB guest + 64 MiB cache: ~410 MB resident).
- Files come back with `debugfs` on a raw copy of the disk (no mount, no nbd); `e2fsck -p`
  first replays the journal when the guest was killed rather than powered off.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from tools.dataplane.configdrive import (
    Instance,
    config_drive_files,
    smbios_args,
    write_config_drive,
)
from tools.dataplane.netns import tied_to_us

REPO = Path(__file__).resolve().parents[2]
GUEST_IMAGE_TOOL = REPO / "tools" / "guest-image" / "guest-image"
#: Host tools a guest needs, with the Debian package that has each.
HOST_TOOLS = {
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-img": "qemu-utils",
    "debugfs": "e2fsprogs",
    "e2fsck": "e2fsprogs",
    "genisoimage": "genisoimage",
}
DEFAULT_RELEASE = 12
SECTOR = 512


@dataclass(frozen=True)
class Partition:
    start: int  # bytes from the start of the disk
    size: int  # bytes
    bootable: bool
    kind: int  # MBR partition type (0x83: Linux)


def mbr_partitions(first_sector: bytes) -> list[Partition]:
    """The primary partitions of an MBR partition table (the disk's first 512 bytes)."""
    if len(first_sector) < SECTOR or first_sector[510:512] != b"\x55\xaa":
        raise ValueError("no MBR partition table (boot signature 55 aa missing)")
    partitions = []
    for index in range(4):
        entry = first_sector[446 + 16 * index : 446 + 16 * (index + 1)]
        status, kind, start, sectors = entry[0], entry[4], *struct.unpack("<II", entry[8:16])
        if kind:
            partitions.append(Partition(start * SECTOR, sectors * SECTOR, status == 0x80, kind))
    return partitions


@dataclass(frozen=True)
class GuestImage:
    """The files `tools/guest-image/guest-image build --release N` leaves in its cache
    directory: one bootable disk image, its manifest and its Glance properties."""

    directory: Path
    release: int = DEFAULT_RELEASE

    @property
    def disk(self) -> Path:
        return self.directory / f"debian-{self.release}.qcow2"

    @property
    def properties(self) -> dict[str, object]:
        loaded: dict[str, object] = json.loads((self.directory / "properties.json").read_text())
        return loaded

    @classmethod
    def built(cls, release: int = DEFAULT_RELEASE) -> GuestImage | None:
        """The image for the current recipe, or None when it has not been built."""
        result = subprocess.run(
            [str(GUEST_IMAGE_TOOL), "path", "--release", str(release)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        return cls(Path(result.stdout.strip()), release) if result.returncode == 0 else None


@dataclass(frozen=True)
class QemuSettings:
    memory_mib: int = 384
    tb_size_mib: int = 64
    #: The flavour's root disk: Nova grows the image's overlay to it, cloud-init grows the
    #: root partition and file system over it at first boot.
    disk_gib: int = 2


class Guest:
    """One VM. `start()` returns at once; the caller polls its service and bounds the wait."""

    def __init__(
        self,
        name: str,
        image: GuestImage,
        workdir: Path,
        *,
        user_data: str,
        mac: str,
        tap: str,
        netns_argv: list[str],
        settings: QemuSettings | None = None,
    ) -> None:
        self.name = name
        self.image = image
        self.workdir = workdir
        self.user_data = user_data
        self.mac = mac
        self.tap = tap
        self.netns_argv = netns_argv  # prefix that runs a command in the taps' namespace
        self.settings = settings or QemuSettings()
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        # What Nova would know of the server: a fresh uuid per boot, as per `server create`.
        self.instance = Instance(
            uuid=str(uuid.uuid4()),
            name=name,
            user_data=user_data,
            mac=mac,
            network_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"calclab/network/{tap}")),
            port_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"calclab/port/{mac}")),
        )

    @property
    def disk(self) -> Path:
        return self.workdir / "disk.qcow2"

    @property
    def serial_log(self) -> Path:
        return self.workdir / "serial.log"

    @property
    def qmp_path(self) -> Path:
        return self.workdir / "qmp.sock"

    @property
    def config_drive(self) -> Path:
        return self.workdir / "disk.config"  # Nova's file name for it

    def start(self) -> None:
        write_config_drive(
            config_drive_files(self.instance), self.workdir / "config-drive", self.config_drive
        )
        if len(str(self.qmp_path)) > 100:  # sockaddr_un holds 108 bytes
            raise ValueError(f"{self.qmp_path} is too long for a unix socket: shorten the workdir")
        s = self.settings
        subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2",
             "-b", str(self.image.disk), str(self.disk), f"{s.disk_gib}G"],
            check=True, capture_output=True,
        )  # fmt: skip
        argv = [
            "qemu-system-x86_64", "-name", self.name,
            "-accel", f"tcg,tb-size={s.tb_size_mib}", "-machine", "pc", "-smp", "1",
            "-m", str(s.memory_mib), "-nodefaults", "-display", "none", "-no-user-config",
            *smbios_args(self.instance),
            # A guest that resets (a triple fault, a kernel set to reboot on panic) makes qemu
            # exit, so it is seen dead at once rather than at the deadline.
            "-no-reboot",
            "-drive", f"file={self.disk},if=none,id=vda,format=qcow2,discard=unmap",
            "-device", "virtio-blk-pci,drive=vda,bootindex=1",
            "-drive", f"file={self.config_drive},if=none,id=cd0,format=raw,readonly=on",
            "-device", "ide-cd,drive=cd0,bus=ide.1,unit=0",
            "-netdev", f"tap,id=n0,ifname={self.tap},script=no,downscript=no",
            "-device", f"virtio-net-pci,netdev=n0,mac={self.mac}",
            "-serial", f"file:{self.serial_log}",
            "-qmp", f"unix:{self.qmp_path},server=on,wait=off",
        ]  # fmt: skip
        self.started_at = time.monotonic()
        self.process = subprocess.Popen(
            tied_to_us([*self.netns_argv, *argv]),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=(self.workdir / "qemu.stderr").open("wb"),
        )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def exit_report(self) -> str:
        """Why qemu is gone: its exit code and stderr."""
        code = None if self.process is None else self.process.poll()
        stderr = (self.workdir / "qemu.stderr").read_text(errors="replace").strip()
        how = "killed (SIGKILL)" if code == -signal.SIGKILL else f"exited with {code}"
        return f"qemu {how}: {stderr or '(no output)'}"

    def serial_tail(self, lines: int = 60) -> str:
        try:
            text = self.serial_log.read_text(errors="replace")
        except FileNotFoundError:
            return "(no serial output)"
        return "\n".join(text.splitlines()[-lines:])

    def resources(self) -> dict[str, float]:
        """Resident memory (MiB) and CPU seconds of the qemu process so far."""
        if not self.alive() or self.process is None:
            return {}
        pid = self.process.pid
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        cpu = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
        rss_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
        return {
            "rss_mib": round(rss_pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1),
            "cpu_s": round(cpu, 1),
        }

    def request_powerdown(self) -> None:
        """Press the ACPI power button (QMP system_powerdown); the guest shuts down cleanly."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(10)
            sock.connect(str(self.qmp_path))
            stream = sock.makefile("rw")
            stream.readline()  # greeting
            for command in ("qmp_capabilities", "system_powerdown"):
                stream.write(json.dumps({"execute": command}) + "\n")
                stream.flush()
                while "return" not in (reply := json.loads(stream.readline())):
                    if "error" in reply:
                        raise RuntimeError(f"QMP {command}: {reply['error']}")

    def wait_stopped(self, timeout: float) -> bool:
        if self.process is None:
            return True
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def read_files(self, paths: list[str]) -> dict[str, bytes | None]:
        """Files from the guest's root file system (None: not there), and under the key
        `DISK_FACTS` its partition table and root file system size as JSON. The guest must be
        stopped."""
        if self.alive():
            raise RuntimeError(f"{self.name} is still running")
        raw = self.workdir / "disk.raw"
        try:
            subprocess.run(
                ["qemu-img", "convert", "-O", "raw", str(self.disk), str(raw)],
                check=True, capture_output=True, timeout=300,
            )  # fmt: skip
            with raw.open("rb") as disk:
                partitions = mbr_partitions(disk.read(SECTOR))
            root = partitions[-1]
            # e2fsprogs open "file?offset=N" at that offset: the partition, without a loop
            # device or a copy.
            device = f"{raw}?offset={root.start}"
            # Exit 1 means "fixed" (a journal replayed after a kill): fine for reading logs.
            subprocess.run(["e2fsck", "-p", device], capture_output=True, timeout=300)
            files: dict[str, bytes | None] = {}
            for path in paths:
                result = subprocess.run(
                    ["debugfs", "-R", f"cat {path}", device],
                    capture_output=True, timeout=60, check=False,
                )  # fmt: skip
                missing = b"not found" in result.stderr or result.returncode != 0
                files[path] = None if missing else result.stdout
            facts = {
                "disk_bytes": raw.stat().st_size,
                "partitions": [vars(partition) for partition in partitions],
                "root_fs_bytes": _ext4_bytes(device),
            }
            files[DISK_FACTS] = json.dumps(facts).encode()
            return files
        finally:
            raw.unlink(missing_ok=True)


#: The key under which `Guest.read_files` adds the disk's layout.
DISK_FACTS = "<disk facts>"


def _ext4_bytes(device: str) -> int:
    """The size of the ext4 file system at `device` (blocks times block size)."""
    result = subprocess.run(
        ["debugfs", "-R", "stats", device], capture_output=True, text=True, timeout=60, check=True
    )
    fields = dict(line.split(":", 1) for line in result.stdout.splitlines() if ":" in line)
    return int(fields["Block count"].strip()) * int(fields["Block size"].strip())
