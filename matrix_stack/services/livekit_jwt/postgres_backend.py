"""The delegation store's PostgreSQL backend (`JobStore.postgres`), for every replica: its own
module so that a pod on SQLite never imports psycopg."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import psycopg
import psycopg_pool

from matrix_stack.services.livekit_jwt.schema import (
    RECORD_VERSION,
    STEPS,
    VERSION,
    VERSION_TABLE,
    next_step,
    postgres_dialect,
)
from matrix_stack.services.livekit_jwt.store import StoreError
from matrix_stack.shared.outbox.conninfo import first_line, passwords

log = logging.getLogger("matrix_stack.livekit_jwt.store")
# Serialises schema upgrades across replicas ("mxs-lkjw" folded into a bigint).
_LOCK = int.from_bytes(b"mxs-lkjw", "big") & 0x7FFF_FFFF_FFFF_FFFF


class PostgresBackend:
    """A small pool; autocommit, each statement its own transaction (none needs more)."""

    def __init__(self, url: str, schema: str, *, holder: str, connect_timeout: float = 5.0) -> None:
        self._secrets = passwords(url)  # ValueError for a malformed string, without echoing it
        self.schema = schema
        self.dialect = postgres_dialect(schema)
        info = psycopg.conninfo.conninfo_to_dict(url)
        where = f"{info.get('host') or 'local'}/{info.get('dbname') or ''}"
        self.description = f"postgresql {where} schema {schema}"
        self._timeout = connect_timeout
        self._pool = psycopg_pool.AsyncConnectionPool(
            url, min_size=1, max_size=3, open=False, timeout=connect_timeout,
            kwargs={"autocommit": True, "connect_timeout": max(int(connect_timeout), 1),
                    "application_name": f"livekit-jwt {holder}"},
        )  # fmt: skip

    def _error(self, exc: BaseException) -> StoreError:
        return StoreError(f"{self.description}: {first_line(exc, self._secrets)}")

    async def open(self) -> None:
        try:
            await self._pool.open(wait=True, timeout=self._timeout)
        except (psycopg.Error, psycopg_pool.PoolTimeout, OSError) as exc:
            await self._pool.close()
            raise self._error(exc) from exc

    async def close(self) -> None:
        await self._pool.close()

    async def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        # a connection the server dropped fails once: the pool hands a fresh one the second time
        for attempt in (1, 2):
            try:
                async with self._pool.connection() as connection:
                    cursor = await connection.execute(sql, tuple(params))
                    return await cursor.fetchall() if cursor.description else []
            except psycopg.OperationalError as exc:
                if attempt == 2:
                    raise self._error(exc) from exc
            except (psycopg.Error, psycopg_pool.PoolTimeout, OSError) as exc:
                raise self._error(exc) from exc
        raise AssertionError("unreachable")

    async def upgrade(self) -> None:
        """One step per transaction under an advisory lock: replicas starting together apply each once."""
        try:
            async with self._pool.connection() as connection:
                while (step := await self._step(connection)) is not None:
                    log.info("delegation store upgraded", extra={"schema": self.schema, "version": step})
        except (psycopg.Error, psycopg_pool.PoolTimeout, OSError) as exc:
            raise self._error(exc) from exc

    async def _step(self, connection: psycopg.AsyncConnection[Any]) -> int | None:
        """Apply the next step, if any; its version."""
        d = self.dialect
        async with connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
            # a schema made beforehand (and granted) must not need CREATE on the database
            found = await connection.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.schema,))
            if await found.fetchone() is None:
                await connection.execute(f'CREATE SCHEMA "{self.schema}"')
            if not await _one(connection, d.exists, (d.table + "schema_version",)):
                await connection.execute(d.sql(VERSION_TABLE))
            step = next_step(int(await _one(connection, d.sql(VERSION))), STEPS, self.description)
            if step is not None:
                for statement in STEPS[step - 1]:
                    await connection.execute(d.sql(statement))
                await connection.execute(d.sql(RECORD_VERSION), (step,))
            return step


async def _one(connection: psycopg.AsyncConnection[Any], sql: str, params: Sequence[Any] = ()) -> Any:
    row = await (await connection.execute(sql, tuple(params))).fetchone()
    assert row is not None
    return row[0]
