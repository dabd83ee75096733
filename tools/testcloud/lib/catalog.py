"""The service catalog and the users: run in the test cloud's virtualenv (openstacksdk).

Creates the service project, the service users (admin and service roles), each service's
endpoints, and the student project with its member user. Idempotent.
"""

from __future__ import annotations

import json
from typing import Any

import openstack

from .core import HOST, KEYSTONE_PORT, REGION, Layout
from .seeding import STUDENT_PROJECT, log

STUDENT_USER = "student"
SERVICE_USERS = ("glance", "nova", "neutron", "placement")
ENDPOINTS = {
    # service name: (type, URL)
    "placement": ("placement", f"http://{HOST}:8778"),
    "glance": ("image", f"http://{HOST}:9292"),
    "neutron": ("network", f"http://{HOST}:9696"),
    "nova": ("compute", f"http://{HOST}:8774/v2.1"),
}


def secrets(lay: Layout) -> dict[str, str]:
    data: dict[str, str] = json.loads(lay.secrets_file.read_text())
    return data


def system_admin(lay: Layout) -> Any:
    """Keystone's identity policies want a system-scoped admin for users and catalog."""
    return openstack.connect(
        auth_url=f"http://{HOST}:{KEYSTONE_PORT}/v3",
        username="admin",
        password=secrets(lay)["admin"],
        user_domain_name="Default",
        system_scope="all",
        region_name=REGION,
        identity_api_version="3",
    )


def catalog(lay: Layout) -> None:
    pw = secrets(lay)
    conn = system_admin(lay)
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
