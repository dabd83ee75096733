"""The model, with no Pulumi: configuration, topology, user data, and each target's plan."""
