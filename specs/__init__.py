"""The specs: what each resource of a stack is, as frozen plain data, in one vocabulary.

The model (`lab/*_plan.py`) produces them from the configuration and the topology; the
components (`components/`) take them as they are. Nothing here imports Pulumi, the model or
the components: this package is the floor both stand on, so a value goes config -> model ->
component in one direction and is never copied from one type into another.
"""
