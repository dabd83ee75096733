"""API-level steps of the testcloud, run with the testcloud virtualenv's Python.

``catalog`` creates the service project, service users, catalog entries and the student
project and user; ``seed`` creates what the calculator-lab stacks expect (external network
``public``, flavors, the ``debian-12`` image, quotas); ``reset`` deletes every resource of
the student project. All three are idempotent. Usage: ``cloudops.py ROOT STEP``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import openstack

HOST = "127.0.0.1"
REGION = "RegionOne"
STUDENT_PROJECT = "calculator-lab"
STUDENT_USER = "student"
SERVICE_USERS = ("glance", "nova", "neutron", "placement")
ENDPOINTS = {
    # service name: (type, URL)
    "placement": ("placement", f"http://{HOST}:8778"),
    "glance": ("image", f"http://{HOST}:9292"),
    "neutron": ("network", f"http://{HOST}:9696"),
    "nova": ("compute", f"http://{HOST}:8774/v2.1"),
}

PUBLIC_NET = "public"
PUBLIC_SUBNET = "public-subnet"
PUBLIC_CIDR = "172.24.4.0/24"
PUBLIC_GATEWAY = "172.24.4.1"
PUBLIC_POOL = {"start": "172.24.4.10", "end": "172.24.4.250"}
FLAVORS = {"m1.tiny": (1, 512, 1), "m1.small": (1, 2048, 20)}  # vCPU, MiB, GB
IMAGE = "debian-12"
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


def secrets(root: Path) -> dict[str, str]:
    data: dict[str, str] = json.loads((root / "state" / "secrets.json").read_text())
    return data


def system_admin(root: Path) -> Any:
    """Keystone's identity policies want a system-scoped admin for users and catalog."""
    return openstack.connect(
        auth_url=f"http://{HOST}:5000/v3",
        username="admin",
        password=secrets(root)["admin"],
        user_domain_name="Default",
        system_scope="all",
        region_name=REGION,
        identity_api_version="3",
    )


def catalog(root: Path) -> None:
    pw = secrets(root)
    conn = system_admin(root)
    ident = conn.identity
    domain = ident.find_domain("default", ignore_missing=False)
    roles = {name: find_or_create_role(ident, name) for name in ("admin", "service", "member")}
    service_project = ident.find_project("service", domain_id=domain.id) or ident.create_project(
        name="service", domain_id=domain.id, description="OpenStack service users"
    )
    for name in SERVICE_USERS:
        user = ensure_user(ident, domain.id, name, pw["service"])
        # Without the service role, Nova's calls to Neutron lose privileges that deleting a
        # server needs (its port would stay bound).
        for role in ("admin", "service"):
            ident.assign_project_role_to_user(service_project, user, roles[role])

    for name, (stype, url) in ENDPOINTS.items():
        service = next(iter(ident.services(name=name)), None) or ident.create_service(
            name=name, type=stype, enabled=True
        )
        have = {e.interface for e in ident.endpoints(service_id=service.id)}
        for interface in ("public", "internal"):
            if interface not in have:
                ident.create_endpoint(
                    service_id=service.id, interface=interface, url=url, region_id=REGION
                )

    project = ident.find_project(STUDENT_PROJECT, domain_id=domain.id) or ident.create_project(
        name=STUDENT_PROJECT, domain_id=domain.id, description="calculator-lab student stacks"
    )
    student = ensure_user(ident, domain.id, STUDENT_USER, pw["student"])
    ident.assign_project_role_to_user(project, student, roles["member"])
    log(f"catalog ready: project {STUDENT_PROJECT}, member user {STUDENT_USER}")


def find_or_create_role(ident: Any, name: str) -> Any:
    return ident.find_role(name) or ident.create_role(name=name)


def ensure_user(ident: Any, domain_id: str, name: str, password: str) -> Any:
    user = ident.find_user(name, domain_id=domain_id)
    if user is None:
        return ident.create_user(name=name, domain_id=domain_id, password=password)
    # Keeps a rebuilt secrets file and an old database consistent.
    return ident.update_user(user, password=password)


def seed(root: Path) -> None:
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


def reset(root: Path) -> None:
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


STEPS = {"catalog": catalog, "seed": seed, "reset": reset}


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[2] not in STEPS:
        print(f"usage: {argv[0]} ROOT {{{','.join(STEPS)}}}", file=sys.stderr)
        return 2
    STEPS[argv[2]](Path(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
