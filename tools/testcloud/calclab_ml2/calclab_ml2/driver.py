"""ML2 mechanism driver that binds every port to its first segment.

The testcloud runs Neutron without any L2 agent, so no stock mechanism driver
would ever bind a port and Nova would put every server into ERROR. There is no
data plane to program: declaring the binding done is all Nova needs.
"""

from typing import Any

from neutron_lib import constants  # type: ignore[import-not-found]
from neutron_lib.api.definitions import portbindings  # type: ignore[import-not-found]
from neutron_lib.plugins.ml2 import api  # type: ignore[import-not-found]


class LoopbackBindingDriver(api.MechanismDriver):  # type: ignore[misc]
    """Binds any port on any network type, reporting it ACTIVE at once."""

    def initialize(self) -> None:
        """Nothing to connect to: the driver keeps no state."""

    def bind_port(self, context: Any) -> None:
        """Bind to the first segment offered; Neutron tries the others only if we decline."""
        for segment in context.segments_to_bind:
            # OVS is a VIF type Nova's fake driver accepts; port_filter tells Nova that
            # security groups are "enforced" by the binding, as with a real OVS agent.
            context.set_binding(
                segment[api.ID],
                portbindings.VIF_TYPE_OVS,
                {portbindings.CAP_PORT_FILTER: True},
                status=constants.PORT_STATUS_ACTIVE,
            )
            return
