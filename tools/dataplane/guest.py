"""A guest VM under QEMU (TCG) on a data plane's tap, booted from tools/guest-image's image with
cloud-init user data on a NoCloud seed, and its files read back from its disk afterwards.

- The seed is a directory QEMU presents as a read-only FAT disk labelled CIDATA (`vvfat`), which
  cloud-init's NoCloud datasource finds by label: no ISO tool on the host.
- The disk is a qcow2 overlay on the cached image, so the image itself is never written.
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
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tools.dataplane.netns import tied_to_us

REPO = Path(__file__).resolve().parents[2]
GUEST_IMAGE_TOOL = REPO / "tools" / "guest-image" / "guest-image"
#: Host tools a guest needs, with the Debian package that has each.
HOST_TOOLS = {
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-img": "qemu-utils",
    "debugfs": "e2fsprogs",
    "e2fsck": "e2fsprogs",
}


@dataclass(frozen=True)
class GuestImage:
    """The files `tools/guest-image/guest-image build` leaves in its cache directory."""

    directory: Path

    @property
    def disk(self) -> Path:
        return self.directory / "debian-12.qcow2"

    @property
    def kernel(self) -> Path:
        return self.directory / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.directory / "initrd.img"

    @property
    def cmdline(self) -> str:
        return (self.directory / "cmdline").read_text().strip()

    @classmethod
    def built(cls) -> GuestImage | None:
        """The image for the current recipe, or None when it has not been built."""
        result = subprocess.run(
            [str(GUEST_IMAGE_TOOL), "path"], capture_output=True, text=True, check=False
        )
        return cls(Path(result.stdout.strip())) if result.returncode == 0 else None


@dataclass(frozen=True)
class QemuSettings:
    memory_mib: int = 384
    tb_size_mib: int = 64


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

    @property
    def disk(self) -> Path:
        return self.workdir / "disk.qcow2"

    @property
    def serial_log(self) -> Path:
        return self.workdir / "serial.log"

    @property
    def qmp_path(self) -> Path:
        return self.workdir / "qmp.sock"

    def start(self) -> None:
        seed = self.workdir / "seed"
        seed.mkdir(parents=True, exist_ok=True)
        (seed / "user-data").write_text(self.user_data)
        (seed / "meta-data").write_text(f"instance-id: {self.name}\nlocal-hostname: {self.name}\n")
        if len(str(self.qmp_path)) > 100:  # sockaddr_un holds 108 bytes
            raise ValueError(f"{self.qmp_path} is too long for a unix socket: shorten the workdir")
        subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2",
             "-b", str(self.image.disk), str(self.disk)],
            check=True, capture_output=True,
        )  # fmt: skip
        s = self.settings
        argv = [
            "qemu-system-x86_64", "-name", self.name,
            "-accel", f"tcg,tb-size={s.tb_size_mib}", "-machine", "q35", "-smp", "1",
            "-m", str(s.memory_mib), "-nodefaults", "-display", "none", "-no-user-config",
            "-kernel", str(self.image.kernel), "-initrd", str(self.image.initrd),
            # A panic reboots at once and -no-reboot turns that into qemu exiting, so a guest
            # that cannot boot is seen dead in seconds rather than at the deadline.
            "-append", f"{self.image.cmdline} panic=1", "-no-reboot",
            "-drive", f"file={self.disk},if=virtio,format=qcow2,discard=unmap",
            "-drive", f"if=virtio,readonly=on,format=raw,file.driver=vvfat,file.dir={seed},"
                      "file.label=CIDATA",
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
        """Files from the guest's root file system (None: not there). The guest must be stopped."""
        if self.alive():
            raise RuntimeError(f"{self.name} is still running")
        raw = self.workdir / "disk.raw"
        try:
            subprocess.run(
                ["qemu-img", "convert", "-O", "raw", str(self.disk), str(raw)],
                check=True, capture_output=True, timeout=300,
            )  # fmt: skip
            # Exit 1 means "fixed" (a journal replayed after a kill): fine for reading logs.
            subprocess.run(["e2fsck", "-p", str(raw)], capture_output=True, timeout=300)
            files: dict[str, bytes | None] = {}
            for path in paths:
                result = subprocess.run(
                    ["debugfs", "-R", f"cat {path}", str(raw)],
                    capture_output=True, timeout=60, check=False,
                )  # fmt: skip
                missing = b"not found" in result.stderr or result.returncode != 0
                files[path] = None if missing else result.stdout
            return files
        finally:
            raw.unlink(missing_ok=True)
