"""What Nova hands a guest: a `config-2` config drive and the SMBIOS identity of its libvirt
driver, so that cloud-init in the guest finds its user data the way it does on a real cloud.

- `config_drive_files(instance)`: the drive's files, by path, in OpenStack's layout
  (`openstack/<version>/meta_data.json`, `user_data`, `vendor_data.json`,
  `network_data.json` from the version that introduced it on). Pure.
- `write_config_drive(files, directory, image)`: those files as an ISO 9660 image labelled
  `config-2`, made as Nova makes it (genisoimage, Rock Ridge and Joliet), Nova's default
  `config_drive_format`. The guest's kernel reads it; the host needs no iso9660.
- `smbios_args(instance)`: QEMU's `-uuid`/`-smbios type=1` as Nova's libvirt driver sets
  them (manufacturer "OpenStack Foundation", product "OpenStack Nova", the instance uuid as
  serial and uuid): cloud-init's ds-identify reads them from /sys/class/dmi/id.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

CONFIG_DRIVE_LABEL = "config-2"
#: The Nova release the test cloud runs (tools/testcloud): what its libvirt driver would
#: write as SMBIOS version and ISO publisher.
NOVA_VERSION = "33.0.2"
#: Metadata versions Nova writes on a config drive, oldest first ("latest" is added).
OPENSTACK_VERSIONS = (
    "2012-08-10",
    "2013-04-04",
    "2013-10-17",
    "2015-10-15",
    "2016-06-30",
    "2016-10-06",
    "2017-02-22",
    "2018-08-27",
    "2020-10-14",
)
_VENDOR_DATA_SINCE = "2013-10-17"
_NETWORK_DATA_SINCE = "2015-10-15"
#: Host tools that can write the ISO, in the order tried, with their Debian package.
ISO_TOOLS = {"genisoimage": "genisoimage", "xorrisofs": "xorriso"}


@dataclass(frozen=True)
class Instance:
    """What Nova knows about a server when it writes the drive."""

    uuid: str
    name: str
    user_data: str
    mac: str
    network_id: str
    port_id: str
    availability_zone: str = "nova"
    launch_index: int = 0
    #: key pair name -> OpenSSH public key
    public_keys: dict[str, str] = field(default_factory=dict)
    dhcp_domain: str = "novalocal"
    mtu: int = 1500

    @property
    def hostname(self) -> str:
        return f"{self.name}.{self.dhcp_domain}" if self.dhcp_domain else self.name


def meta_data(instance: Instance) -> dict[str, object]:
    # random_seed: Nova sends 512 random bytes; derived from the uuid here so that the same
    # instance always gets the same drive (cloud-init only feeds it to the entropy pool).
    seed = b"".join(
        hashlib.sha256(f"{instance.uuid}/{block}".encode()).digest() for block in range(16)
    )
    document: dict[str, object] = {
        "uuid": instance.uuid,
        "meta": {},
        "hostname": instance.hostname,
        "name": instance.name,
        "launch_index": instance.launch_index,
        "availability_zone": instance.availability_zone,
        "random_seed": base64.b64encode(seed).decode("ascii"),
        "project_id": "00000000000000000000000000000000",
        "devices": [],
        "dedicated_cpus": [],
    }
    if instance.public_keys:
        document["public_keys"] = dict(instance.public_keys)
        document["keys"] = [
            {"name": name, "type": "ssh", "data": key} for name, key in instance.public_keys.items()
        ]
    return document


def network_data(instance: Instance) -> dict[str, object]:
    """One port on a DHCP-enabled Neutron subnet, as Nova describes it: the guest is told to
    use DHCP on the NIC with this MAC (Neutron's DHCP then gives the fixed address, the
    gateway and the host routes)."""
    link = f"tap{instance.port_id[:11]}"
    return {
        "links": [
            {
                "id": link,
                "vif_id": instance.port_id,
                "type": "bridge",
                "mtu": instance.mtu,
                "ethernet_mac_address": instance.mac,
            }
        ],
        "networks": [
            {
                "id": "network0",
                "type": "ipv4_dhcp",
                "link": link,
                "network_id": instance.network_id,
            }
        ],
        "services": [],
    }


def config_drive_files(instance: Instance) -> dict[str, bytes]:
    """Path on the drive -> content, for every metadata version Nova writes."""
    meta = json.dumps(meta_data(instance)).encode()
    network = json.dumps(network_data(instance)).encode()
    files: dict[str, bytes] = {}
    for version in (*OPENSTACK_VERSIONS, "latest"):
        base = f"openstack/{version}"
        files[f"{base}/meta_data.json"] = meta
        files[f"{base}/user_data"] = instance.user_data.encode()
        # ISO dates compare as strings; "latest" sorts after every date
        if version >= _VENDOR_DATA_SINCE:
            files[f"{base}/vendor_data.json"] = b"{}"
        if version >= _NETWORK_DATA_SINCE:
            files[f"{base}/network_data.json"] = network
    return files


def iso_tool() -> list[str] | None:
    """The argv prefix of the first ISO writer installed here, or None."""
    for tool in ISO_TOOLS:
        path = shutil.which(tool)
        if path is not None:
            return [path]
    return None


def iso_argv(tool: list[str], source: Path, image: Path) -> list[str]:
    # Nova's options: Rock Ridge and Joliet names, lower case and several dots allowed.
    return [
        *tool,
        "-o", str(image), "-ldots", "-allow-lowercase", "-allow-multidot", "-l",
        "-publisher", f"OpenStack Compute {NOVA_VERSION}", "-quiet", "-J", "-r",
        "-V", CONFIG_DRIVE_LABEL, str(source),
    ]  # fmt: skip


def write_config_drive(files: dict[str, bytes], directory: Path, image: Path) -> None:
    """`files` under `directory`, then as the ISO 9660 image `image`."""
    tool = iso_tool()
    if tool is None:
        wanted = " or ".join(ISO_TOOLS.values())
        raise FileNotFoundError(f"no ISO 9660 writer: apt-get install {wanted}")
    for relative, content in files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    subprocess.run(iso_argv(tool, directory, image), check=True, capture_output=True, timeout=60)


def smbios_args(instance: Instance) -> list[str]:
    """QEMU arguments for the SMBIOS system (type 1) table of a Nova guest. With
    `sysinfo_serial = unique` (Nova's default) the serial is the instance uuid."""
    fields = {
        "manufacturer": "OpenStack Foundation",
        "product": "OpenStack Nova",
        "version": NOVA_VERSION,
        "serial": instance.uuid,
        "uuid": instance.uuid,
        "family": "Virtual Machine",
    }
    # QEMU's option syntax: a comma inside a value is written twice.
    table = ",".join(f"{key}={value.replace(',', ',,')}" for key, value in fields.items())
    return ["-uuid", instance.uuid, "-smbios", f"type=1,{table}"]
