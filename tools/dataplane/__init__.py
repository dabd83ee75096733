"""A Neutron-shaped data plane made of network namespaces, and QEMU guests to put on it.

- `plan.plan_for(topology)`: what Neutron's agents would build for a topology (pure data);
- `netns.NetnsDataPlane`: builds a plan with namespaces, bridges, veth pairs, iptables, dnsmasq;
- `guest.Guest`: a QEMU/TCG guest on one of its taps, booted from tools/guest-image's image.

Used by the boot tests (tests/boot/); meant to be reused to give the test cloud a real data
plane. See tools/guest-image/README.md for what it builds and what it costs.
"""
