"""Where the bot's login (access token and device) is kept, so restarts and replicas reuse one device:
transaction ids are de-duplicated per device, so a message re-sent by another replica after a
takeover posts once.

A file for one replica (`data_dir/session.json`); the outbox's PostgreSQL for several
(`outbox_postgres.PostgresSession`), where logging in is serialised across replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol


class SessionStore(Protocol):
    description: str

    async def load(self) -> dict[str, Any] | None: ...

    async def save(self, session: dict[str, Any]) -> None: ...

    def exclusive(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Held while logging in, so that concurrent starts make one device, not one each."""
        ...


class FileSession:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = str(path)

    async def load(self) -> dict[str, Any] | None:
        try:
            saved = json.loads(await asyncio.to_thread(self.path.read_text))
        except (OSError, ValueError):
            return None
        return saved if isinstance(saved, dict) else None

    async def save(self, session: dict[str, Any]) -> None:
        def write() -> None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                json.dump(session, handle)

        await asyncio.to_thread(write)

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        yield  # one replica owns the file
