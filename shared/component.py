"""What the kit runs: a component with settings, a metrics registry, a start and a stop, and a
readiness answer. A Matrix bridge (`service.Service`) is one; the LDAP proxy is another."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # the Matrix client imports StartupError from here; keep this module a leaf
    from matrix_stack.core.metrics import HttpMetrics
    from matrix_stack.core.settings import KitSettings


class StartupError(Exception):
    """The component cannot start (wrong credentials, an unreachable homeserver, a port in use).
    One line for the operator."""


class Component(Protocol):
    @property
    def settings(self) -> KitSettings: ...

    @property
    def metrics(self) -> HttpMetrics: ...

    async def start(self) -> None:
        """Raises StartupError."""

    async def stop(self) -> None: ...

    async def ready(self) -> bool: ...

    def readiness(self) -> dict[str, Any]:
        """What `/readyz` reports beside its status."""
