"""An ML2 mechanism driver that lets Neutron bind ports on a cloud without agents."""
