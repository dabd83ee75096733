"""Names of child resources derived from values."""


def cidr_slug(cidr: str) -> str:
    """A CIDR as a resource-name fragment: 192.168.2.0/24 -> 192-168-2-0-24."""
    return cidr.replace(".", "-").replace("/", "-")
