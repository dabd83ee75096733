"""The lab's five-service calculator: an expression front end and one microservice per operation.

The pure core (``arith``, ``parser``, ``evaluate``) does no I/O; ``httpbase``, ``service``,
``client`` and ``front`` are the thin HTTP layer, configured by environment variables (``config``).
Run a role with ``python3 -m calculator <role>``.
"""

__version__ = "1.0.0"
