"""What the calculator-lab stacks expect, and emptying the student project: run in the test
cloud's virtualenv (openstacksdk). Both idempotent.

``seed`` creates the external network ``public`` with its subnet, the flavors, the
``debian-12`` image and the student project's quotas; ``reset`` deletes every resource of
the student project, in dependency order, and checks it is empty.
"""

from __future__ import annotations

import time
from typing import Any

import openstack

from .core import Layout

STUDENT_PROJECT = "calculator-lab"
PUBLIC_NET = "public"
PUBLIC_SUBNET = "public-subnet"
PUBLIC_CIDR = "172.24.4.0/24"
PUBLIC_GATEWAY = "172.24.4.1"
PUBLIC_POOL = {"start": "172.24.4.10", "end": "172.24.4.250"}
FLAVORS = {"m1.tiny": (1, 512, 1), "m1.small": (1, 2048, 20)}  # vCPU, MiB, GB
IMAGE = "debian-12"
# Glance properties a distribution image carries; the preflight judges an image by them.
IMAGE_OS = {"os_distro": "debian", "os_version": "12"}
# Two student stacks side by side (5 servers, 4 routers, 4 networks, ~12 ports, one
# floating IP, ~5 groups of ~20 rules each), with room to spare.
COMPUTE_QUOTA = {"instances": 20, "cores": 40, "ram": 40960}
NETWORK_QUOTA = {
    "ports": 100,
    "routers": 20,
    "networks": 20,
    "subnets": 20,
    "floating_ips": 10,
    "security_groups": 50,
    "security_group_rules": 300,
}


def log(message: str) -> None:
    print(f"testcloud: {message}", flush=True)


def seed(lay: Layout) -> None:
    conn: Any = openstack.connect(cloud="testcloud-admin")
    net = conn.network
    public = net.find_network(PUBLIC_NET)
    if public is None:
        public = net.create_network(
            name=PUBLIC_NET,
            is_router_external=True,
            is_shared=False,
            provider_network_type="flat",
            provider_physical_network="public",
        )
    subnet = net.find_subnet(PUBLIC_SUBNET, network_id=public.id)
    if subnet is None:
        net.create_subnet(
            name=PUBLIC_SUBNET,
            network_id=public.id,
            ip_version=4,
            cidr=PUBLIC_CIDR,
            gateway_ip=PUBLIC_GATEWAY,
            allocation_pools=[PUBLIC_POOL],
            is_dhcp_enabled=False,
        )

    for name, (vcpus, ram, disk) in FLAVORS.items():
        if conn.compute.find_flavor(name) is None:
            conn.compute.create_flavor(name=name, vcpus=vcpus, ram=ram, disk=disk, is_public=True)

    image = conn.image.find_image(IMAGE)
    if image is not None and image.os_distro != IMAGE_OS["os_distro"]:
        # A cloud seeded before the properties: as a school's image would carry them.
        conn.image.update_image(image, **IMAGE_OS)
    if image is not None and image.status != "active":
        conn.image.delete_image(image)
        image = None
    if image is None:
        image = conn.image.create_image(
            name=IMAGE,
            data=b"\0" * (1024 * 1024),
            disk_format="raw",
            container_format="bare",
            visibility="public",
            **IMAGE_OS,
        )
        deadline = time.monotonic() + 60
        while conn.image.get_image(image).status != "active":
            if time.monotonic() > deadline:
                raise SystemExit(f"image {IMAGE} did not become active")
            time.sleep(1)

    project = conn.identity.find_project(STUDENT_PROJECT, ignore_missing=False)
    conn.set_compute_quotas(project.id, **COMPUTE_QUOTA)
    net.update_quota(project.id, **NETWORK_QUOTA)
    log(
        f"seeded: network {PUBLIC_NET} ({PUBLIC_CIDR}), flavors {', '.join(FLAVORS)}, "
        f"image {IMAGE}, quotas for {STUDENT_PROJECT}"
    )


def reset(lay: Layout) -> None:
    """Delete everything the student project holds, in dependency order."""
    conn: Any = openstack.connect(cloud="testcloud")
    project_id = conn.current_project_id
    compute, net = conn.compute, conn.network
    for server in list(compute.servers()):
        compute.delete_server(server)
    for server in list(compute.servers()):
        compute.wait_for_delete(server, wait=120)
    for ip in list(net.ips(project_id=project_id)):
        net.delete_ip(ip)
    for router in list(net.routers(project_id=project_id)):
        # Neutron refuses to remove an interface that an extra route still uses.
        if router.routes:
            net.update_router(router, routes=[])
        for port in list(net.ports(device_id=router.id)):
            if port.device_owner == "network:router_interface":
                # Positional: the keyword is port_id in openstacksdk 4.10, port in 4.22.
                net.remove_interface_from_router(router, None, port.id)
        net.delete_router(router)
    for port in list(net.ports(project_id=project_id)):
        if not (port.device_owner or "").startswith("network:"):
            net.delete_port(port)
    for subnet in list(net.subnets(project_id=project_id)):
        net.delete_subnet(subnet)
    for network in list(net.networks(project_id=project_id)):
        net.delete_network(network)
    for group in list(net.security_groups(project_id=project_id)):
        if group.name != "default":
            net.delete_security_group(group)
    for keypair in list(compute.keypairs()):
        compute.delete_keypair(keypair)
    left = {
        "servers": list(compute.servers()),
        "floating IPs": list(net.ips(project_id=project_id)),
        "routers": list(net.routers(project_id=project_id)),
        "ports": list(net.ports(project_id=project_id)),
        "networks": list(net.networks(project_id=project_id)),
        "security groups": [
            g for g in net.security_groups(project_id=project_id) if g.name != "default"
        ],
    }
    remaining = {kind: len(items) for kind, items in left.items() if items}
    if remaining:
        raise SystemExit(f"project {STUDENT_PROJECT} still holds {remaining}")
    log(f"project {STUDENT_PROJECT} emptied")
