"""What the kit runs: a component with settings, a metrics registry, a start and a stop, a
readiness answer and its secrets. A Matrix bridge (`service.Service`) is one; the LDAP proxy is another."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from matrix_stack.shared.kit.metrics import HttpMetrics
    from matrix_stack.shared.kit.settings import KitSettings


class Component(Protocol):
    @property
    def settings(self) -> KitSettings: ...

    @property
    def metrics(self) -> HttpMetrics: ...

    async def start(self) -> None:
        """Raises errors.StartupError."""

    async def stop(self) -> None: ...

    async def ready(self) -> bool: ...

    def readiness(self) -> dict[str, Any]:
        """What `/readyz` reports beside its status."""

    def secrets(self) -> list[str]:
        """What its logs must never show: the settings' secrets and any it read elsewhere."""
