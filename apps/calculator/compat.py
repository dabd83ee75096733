"""What the calculator needs from Python that 3.8 does not spell the way 3.11 does.

The calculator runs on the python3 a school's VM image ships, from 3.8 (Ubuntu 20.04) on; the
lint settings in ``apps/ruff.toml`` keep newer syntax out, and this module holds the two
bridges that take more than a one-line change.
"""

from __future__ import annotations

import asyncio
from dataclasses import MISSING, fields
from typing import TypeVar

_Class = TypeVar("_Class", bound=type)

#: What a timeout raises: ``asyncio.wait_for`` raised its own class before 3.11, and a socket
#: that times out raises the builtin one (which ``asyncio.TimeoutError`` is from 3.11 on).
TIMEOUT_ERRORS = (TimeoutError, asyncio.TimeoutError)


def slotted(cls: _Class) -> _Class:
    """The dataclass ``cls`` rebuilt with ``__slots__``, as ``dataclass(slots=True)`` (3.10+)
    does: instances get no ``__dict__``, which makes them smaller and their fields faster.

    Apply it on top of ``@dataclass``. Slots cannot be added to an existing class, and a slot
    may not share its name with a class attribute, so the class is made again without the
    fields' defaults (the generated ``__init__`` holds them) and with one slot per field. Only
    for classes that do not use zero-argument ``super()``, which would still name the old class.
    """
    for field in fields(cls):
        if not field.init and field.default is not MISSING:
            # The generated __init__ leaves such a field to its class attribute, which a slot
            # would replace: a ClassVar or an assignment in __post_init__ says it instead.
            raise TypeError(f"{cls.__name__}.{field.name}: init=False with a default")
    names = tuple(field.name for field in fields(cls))
    namespace = {key: value for key, value in vars(cls).items() if key not in names}
    namespace.pop("__dict__", None)
    namespace.pop("__weakref__", None)
    namespace["__slots__"] = names
    rebuilt = type(cls)(cls.__name__, cls.__bases__, namespace)
    rebuilt.__qualname__ = cls.__qualname__
    return rebuilt
