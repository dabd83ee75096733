"""A Neutron-shaped data plane made of network namespaces, and QEMU guests to put on it.

- `plan.plan_for(topology)`: what Neutron's agents would build for a topology (pure data);
- `netns.NetnsDataPlane`: builds a plan with namespaces, bridges, veth pairs, iptables, dnsmasq;
- `guest.Guest`: a QEMU/TCG guest on one of its taps, booted from tools/guest-image's image;
- `secgroups.render(state)`: Neutron's security groups as one nftables ruleset (pure), and
  `sgfw`, the agent that reads them from the API and loads that ruleset.

Used by the boot tests (tests/boot/); meant to be reused to give the test cloud a real data
plane. See README.md here for which part is ours and which OpenStack's, and
tools/guest-image/README.md for what the boot layer builds and what it costs.
"""
