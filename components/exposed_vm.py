"""ExposedVM: a VM on a port with its security groups, and optionally a floating IP."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_openstack as openstack

from components.private_network import SubnetRef
from lab.names import TRIGGER_METADATA
from specs.openstack import VmSpec


@dataclass(frozen=True)
class ExposedVMArgs:
    spec: VmSpec  # its ingress rules are the caller's to put into the groups below
    subnet: SubnetRef  # of spec.subnet
    security_group_ids: Sequence[pulumi.Input[str]]
    key_pair: pulumi.Input[str] | None = None
    # Name of the external network to take a floating IP from; None keeps the VM private.
    floating_ip_pool: str | None = None
    # Neutron refuses to bind a floating IP to a port whose subnet has no router to the
    # external network yet, so the caller passes the router interfaces here.
    floating_ip_depends_on: Sequence[pulumi.Resource] = ()


class ExposedVM(pulumi.ComponentResource):
    port_id: pulumi.Output[str]
    """The VM's Neutron port, which carries its security groups and fixed address."""
    instance_id: pulumi.Output[str]
    """The Nova server's id."""
    fixed_ip: pulumi.Output[str]
    """The VM's address on its private subnet."""
    floating_ip: pulumi.Output[str] | None
    """The public address, when a pool was given."""

    def __init__(
        self, name: str, args: ExposedVMArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("calculator-lab:components:ExposedVM", name, None, opts)
        spec = args.spec
        child = pulumi.ResourceOptions(parent=self)

        # Security groups go on the port, not the server: a port we own keeps its fixed
        # address and rules even if the server is rebuilt.
        port = openstack.networking.Port(
            f"{name}-port",
            name=spec.physical_name,
            network_id=args.subnet.network_id,
            fixed_ips=[
                openstack.networking.PortFixedIpArgs(
                    subnet_id=args.subnet.subnet_id, ip_address=spec.fixed_ip
                )
            ],
            security_group_ids=list(args.security_group_ids),
            admin_state_up=True,
            tags=list(spec.tags),
            opts=child,
        )
        trigger = spec.replacement_trigger
        instance = openstack.compute.Instance(
            f"{name}-instance",
            name=spec.physical_name,
            image_name=spec.image_name,
            flavor_name=spec.flavor_name,
            key_pair=args.key_pair,
            user_data=spec.user_data,
            networks=[openstack.compute.InstanceNetworkArgs(port=port.id)],
            tags=list(spec.tags),
            # The server records the trigger it is created under (lab/replacement.py), for the
            # program to read back.
            metadata={TRIGGER_METADATA: trigger} if trigger is not None else None,
            opts=pulumi.ResourceOptions(
                parent=self,
                # The port (fixed address, floating IP) is ours and binds to one server at a
                # time: a replacement (a restore through imageByRole, a server in ERROR or gone)
                # must free it first.
                delete_before_replace=True,
                # Not `ignore_changes` on the metadata: the engine would then create the
                # replacement with the old value, and the new server would record the wrong one.
                replacement_trigger=trigger,
            ),
        )

        self.floating_ip = None
        if args.floating_ip_pool is not None:
            floating_ip = openstack.networking.FloatingIp(
                f"{name}-fip",
                pool=args.floating_ip_pool,
                description=f"public address of {spec.physical_name}",
                tags=list(spec.tags),
                opts=child,
            )
            openstack.networking.FloatingIpAssociate(
                f"{name}-fip-association",
                floating_ip=floating_ip.address,
                port_id=port.id,
                opts=pulumi.ResourceOptions(
                    parent=self, depends_on=list(args.floating_ip_depends_on)
                ),
            )
            self.floating_ip = floating_ip.address

        self.port_id = port.id
        self.instance_id = instance.id
        self.fixed_ip = pulumi.Output.from_input(spec.fixed_ip)
        self.register_outputs(
            {
                "port_id": self.port_id,
                "instance_id": self.instance_id,
                "fixed_ip": self.fixed_ip,
                "floating_ip": self.floating_ip,
            }
        )
