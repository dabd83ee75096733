"""Entry point the Pulumi engine runs for ``--policy-pack policy``: serves the lab's rules."""

import sys
from pathlib import Path
from typing import TYPE_CHECKING

# The rules read the lab's vocabulary (roles, ports, tags) from lab/names.py, one level up.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

if TYPE_CHECKING:
    from policy.lab_policy import serve
else:
    # The engine runs this directory as a script, with the directory itself on sys.path.
    from lab_policy import serve

serve()
