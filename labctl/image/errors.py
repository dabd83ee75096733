"""The one error of `lab image`: an upload that cannot be done or went wrong.

In a module of its own so that each of the package's modules can raise it without importing
another's job.
"""

from __future__ import annotations

from labctl.errors import LabError


class ImageError(LabError):
    """An upload that cannot be done or went wrong; the message names what and what to do."""
