"""What the boot layer hands its guests as Nova would: the config drive's layout, the SMBIOS
identity, and the MBR reading used to find the root file system on their disks."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from tools.dataplane.configdrive import (
    Instance,
    config_drive_files,
    iso_argv,
    smbios_args,
)
from tools.dataplane.guest import Partition, mbr_partitions

UUID = "0c6f1f9e-5a57-4b47-9d43-1b5e4a1b2c3d"


def _instance(**overrides: object) -> Instance:
    fields: dict[str, object] = {
        "uuid": UUID,
        "name": "sum",
        "user_data": "#cloud-config\n{}\n",
        "mac": "fa:16:3e:a8:02:0b",
        "network_id": "net-1",
        "port_id": "7a1e5b0c-1111-2222-3333-444455556666",
    }
    fields.update(overrides)
    return Instance(**fields)  # type: ignore[arg-type]


def test_drive_has_openstack_layout_in_every_version_nova_writes() -> None:
    files = config_drive_files(_instance())
    versions = {path.split("/")[1] for path in files}
    assert {"2012-08-10", "latest"} <= versions
    for version in versions:
        assert files[f"openstack/{version}/user_data"] == b"#cloud-config\n{}\n"
        meta = json.loads(files[f"openstack/{version}/meta_data.json"])
        assert meta["uuid"] == UUID
        assert (meta["name"], meta["hostname"]) == ("sum", "sum.novalocal")
        assert (meta["availability_zone"], meta["launch_index"]) == ("nova", 0)
    # network_data.json appeared with the 2015-10-15 version, as in Nova
    assert "openstack/2012-08-10/network_data.json" not in files
    network = json.loads(files["openstack/latest/network_data.json"])
    (link,) = network["links"]
    (net,) = network["networks"]
    assert link["ethernet_mac_address"] == "fa:16:3e:a8:02:0b"
    assert (net["type"], net["link"]) == ("ipv4_dhcp", link["id"])
    assert all(path.startswith("openstack/") for path in files)


def test_public_keys_only_when_there_are_some() -> None:
    bare = json.loads(config_drive_files(_instance())["openstack/latest/meta_data.json"])
    assert "public_keys" not in bare
    keyed = _instance(public_keys={"alice": "ssh-ed25519 AAAA alice@x"})
    meta = json.loads(config_drive_files(keyed)["openstack/latest/meta_data.json"])
    assert meta["public_keys"] == {"alice": "ssh-ed25519 AAAA alice@x"}
    assert meta["keys"] == [{"name": "alice", "type": "ssh", "data": "ssh-ed25519 AAAA alice@x"}]


def test_the_drive_is_the_same_for_the_same_instance() -> None:
    assert config_drive_files(_instance()) == config_drive_files(_instance())
    other = config_drive_files(_instance(uuid="f" * 8 + UUID[8:]))
    assert (
        other["openstack/latest/meta_data.json"]
        != (config_drive_files(_instance())["openstack/latest/meta_data.json"])
    )


def test_smbios_is_novas_with_the_instance_uuid() -> None:
    args = smbios_args(_instance())
    assert args[:2] == ["-uuid", UUID]
    assert args[2] == "-smbios"
    table = dict(item.split("=", 1) for item in args[3].split(",")[1:])
    assert args[3].startswith("type=1,")
    # what cloud-init's ds-identify compares /sys/class/dmi/id/product_name with
    assert table["product"] == "OpenStack Nova"
    assert table["manufacturer"] == "OpenStack Foundation"
    assert table["uuid"] == table["serial"] == UUID


def test_iso_is_labelled_config_2_and_readable(tmp_path: Path) -> None:
    """The real genisoimage with Nova's options; read back with isoinfo (same package)."""
    tool = shutil.which("genisoimage")
    if tool is None or shutil.which("isoinfo") is None:
        pytest.skip("genisoimage not installed (tools/guest-image/guest-image install)")
    source = tmp_path / "drive"
    for relative, content in config_drive_files(_instance()).items():
        (source / relative).parent.mkdir(parents=True, exist_ok=True)
        (source / relative).write_bytes(content)
    image = tmp_path / "disk.config"
    subprocess.run(iso_argv([tool], source, image), check=True, capture_output=True)
    info = subprocess.run(["isoinfo", "-d", "-i", str(image)], capture_output=True, text=True)
    # the label cloud-init's ds-identify looks for, spelled out: not the module's constant
    assert "Volume id: config-2" in info.stdout
    listing = subprocess.run(
        ["isoinfo", "-R", "-f", "-i", str(image)], capture_output=True, text=True
    ).stdout.split()
    assert "/openstack/latest/meta_data.json" in listing
    assert "/openstack/2012-08-10/user_data" in listing


def _mbr(entries: list[tuple[int, int, int, int]]) -> bytes:
    table = b"".join(
        struct.pack("<B3sB3sII", status, b"\0\0\0", kind, b"\0\0\0", start, sectors)
        for status, kind, start, sectors in entries
    )
    return b"\0" * 446 + table.ljust(64, b"\0") + b"\x55\xaa"


def test_mbr_partitions_are_read_in_bytes() -> None:
    sector = _mbr([(0x80, 0x83, 2048, 2095104)])
    assert mbr_partitions(sector) == [Partition(1048576, 2095104 * 512, True, 0x83)]
    two = _mbr([(0, 0x83, 2048, 100), (0, 0x82, 4096, 50)])
    assert [p.start for p in mbr_partitions(two)] == [1048576, 4096 * 512]


def test_a_disk_without_partition_table_is_refused() -> None:
    with pytest.raises(ValueError, match="no MBR"):
        mbr_partitions(b"\0" * 512)
