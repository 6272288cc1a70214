"""matrix-nio, imported without its own end-to-end encryption machine.

nio loads its Olm machine and crypto store (peewee and friends, about 17 MiB of a bridge's idle
memory) whenever vodozemac is importable, which it is: the bots' encryption is ours (`crypto/`),
built on vodozemac directly. So nio is imported once with vodozemac hidden from its check.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any


def import_nio_without_its_crypto() -> None:
    """Run by this package's `__init__`, before any module of it imports nio."""
    if "nio" in sys.modules:  # imported before us (a test, a tool): taken as it is
        return
    find_spec = importlib.util.find_spec

    def hidden(name: str, *args: Any, **kwargs: Any) -> Any:
        return None if name == "vodozemac" else find_spec(name, *args, **kwargs)

    importlib.util.find_spec = hidden
    try:
        import nio  # noqa: F401
    finally:
        importlib.util.find_spec = find_spec
