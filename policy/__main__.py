"""Entry point the Pulumi engine runs for ``--policy-pack policy``: serves the lab's rules."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from policy.lab_policy import serve
else:
    # The engine runs this directory as a script, with the directory itself on sys.path.
    from lab_policy import serve

serve()
