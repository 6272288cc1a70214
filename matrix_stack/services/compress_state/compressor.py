"""A run: rooms taken in the order of their first uncompressed state group, one chunk at a time,
each changed group rewritten in its own transaction and checked there before it commits."""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import errors

from matrix_stack.services.compress_state import database as db
from matrix_stack.services.compress_state import levels as chains
from matrix_stack.services.compress_state import progress
from matrix_stack.services.compress_state.config import CompressStateSettings, RustProgress
from matrix_stack.services.compress_state.plan import Step, plan_chunk
from matrix_stack.services.compress_state.report import Summary

log = logging.getLogger("compress_state")

SCAN_BATCH = 5000

# A rewrite that meets these leaves its group as it was; the run goes on.
_CONFLICTS = (errors.LockNotAvailable, errors.DeadlockDetected, errors.SerializationFailure)


class VerificationFailed(Exception):
    pass


class Compressor:
    def __init__(
        self,
        connection: psycopg.Connection[Any],
        settings: CompressStateSettings,
        *,
        on_chunk: Callable[[Summary], None] = lambda summary: None,
    ) -> None:
        self.connection = connection
        self.settings = settings
        self.summary = Summary(dry_run=settings.dry_run)
        self.on_chunk = on_chunk
        self.stopping = False  # set by a signal: stop after the group in hand
        self._rooms_seen: set[str] = set()
        self._pending_table = db.has_table(connection, "state_groups_pending_deletion")
        self._last_write = 0.0

    def run(self) -> Summary:
        started = time.monotonic()
        self.summary.table_bytes_before = db.table_bytes(self.connection)
        if not self.settings.dry_run:
            progress.create(self.connection)
        rooms = self._load_rooms()
        if self.settings.room is not None:
            self._one_room(self.settings.room, rooms)
        else:
            self._every_room(rooms)
        if not self.settings.dry_run and not self.stopping:
            forgotten = progress.forget_vanished_rooms(self.connection)
            if forgotten:
                log.info("forgot the progress of %d rooms that no longer exist", forgotten)
        self.summary.rooms = len(self._rooms_seen)
        self.summary.table_bytes_after = db.table_bytes(self.connection)
        self.summary.seconds = time.monotonic() - started
        return self.summary

    def _load_rooms(self) -> dict[str, progress.RoomProgress]:
        rust = self.settings.rust_progress is RustProgress.resume
        if self.settings.dry_run and not db.has_table(self.connection, progress.ROOMS):
            return progress.rust_rooms(self.connection, self.settings.levels) if rust else {}
        return progress.load_rooms(self.connection, self.settings.levels, rust=rust)

    def _pending(self, groups: set[int] | list[int]) -> set[int]:
        return db.pending_deletion(self.connection, groups) if self._pending_table else set()

    def _budget_left(self) -> bool:
        return self.summary.chunks < self.settings.chunks and not self.stopping

    def _one_room(self, room: str, rooms: dict[str, progress.RoomProgress]) -> None:
        while self._budget_left():
            if not self._chunk(room, rooms):
                self.summary.finished = True
                return

    def _every_room(self, rooms: dict[str, progress.RoomProgress]) -> None:
        cursor = 0 if self.settings.dry_run else progress.load_cursor(self.connection)
        while self._budget_left():
            batch = db.groups_from(self.connection, cursor, SCAN_BATCH)
            if not batch:
                self.summary.finished = True
                return
            for group, room in batch:
                if not self._budget_left():
                    return
                known = rooms.get(room)
                if known is not None and group <= known.last_group:
                    continue
                self._chunk(room, rooms)
                if not self.settings.dry_run and not self.stopping:
                    progress.save_cursor(self.connection, group)  # every group below it is done
            cursor = batch[-1][0] + 1

    def _chunk(self, room: str, rooms: dict[str, progress.RoomProgress]) -> bool:
        """Compress the next chunk of `room`; False when it has nothing left to do."""
        state = rooms.get(room) or progress.RoomProgress(-1, chains.fresh(self.settings.levels))
        groups = db.room_groups(self.connection, room, state.last_group, self.settings.chunk_size)
        if not groups:
            return False
        self._rooms_seen.add(room)
        self.summary.chunks += 1
        held = chains.held(state.levels)
        if held:
            usable = db.existing(self.connection, held) - self._pending(held)
            if usable != held:
                log.info("chain groups %s of %s are gone or pending deletion (purged history?): its chains"
                         " start anew", sorted(held - usable), room, extra={"room_id": room})  # fmt: skip
                state.levels, state.rewritten = chains.fresh(self.settings.levels), {}
        before = copy.deepcopy(state.levels)
        start = state.last_group, chains.dump(state.levels)  # saved with each rewrite until the chunk ends
        # Every read of the chunk in one snapshot: a deletion committing between them (de-deltaing a
        # group whose old base goes) cannot make the plan mix two versions of the tables.
        with db.snapshot(self.connection):
            edges, rows = db.load(self.connection, groups)
            pending = self._pending(groups)
            steps = plan_chunk(groups, edges, rows, state.levels, lambda g: db.resolve(self.connection, g),
                               keep=pending, bases=state.rewritten)  # fmt: skip
        if pending:
            log.info("leaving %d state groups of %s that Synapse is about to delete", len(pending), room,
                     extra={"room_id": room})  # fmt: skip
        self.summary.groups += len(groups)
        self.summary.skipped += len(pending)
        old_rows = sum(len(rows[g]) for g in groups)
        new_rows = sum(len(step.rows) for step in steps) + sum(len(rows[g]) for g in pending)
        changed = [step for step in steps if step.changed]
        self.summary.rows_before += old_rows
        resumed = bool(state.rewritten)  # a chunk a stopped run began to write: decided then
        if not changed or (new_rows >= old_rows and not resumed):
            if new_rows >= old_rows and changed:
                # Nothing written: the chains go on from where they were, not from groups left with
                # Synapse's own (up to 100-delta) chains, which would lengthen every later walk.
                state.levels = before
            if changed:
                log.info("the new chains for %s groups %d-%d would not save rows (%d now, %d after):"
                         " left as they are", room, groups[0], groups[-1], old_rows, new_rows,
                         extra={"room_id": room})  # fmt: skip
            self.summary.unchanged += len(steps)
            self.summary.rows_after += old_rows
            self._finish_chunk(room, rooms, state, groups[-1])
            return True
        self.summary.unchanged += len(steps) - len(changed)
        self.summary.rows_after += old_rows  # less what each rewrite saves, once it commits
        if self.settings.dry_run:
            self.summary.rows_after -= sum(len(step.old) - len(step.rows) for step in changed)
            self._finish_chunk(room, rooms, state, groups[-1])
            return True
        failed = self._verify_plan(changed) if self.settings.verify else set()
        for step in changed:
            if self.stopping:
                # Each rewrite saved the room's progress with it: the rest is planned again next run.
                return True
            if step.group not in failed and self._write(room, step, start, state.rewritten):
                self.summary.rows_after -= len(step.old) - len(step.rows)
        self._finish_chunk(room, rooms, state, groups[-1])
        return True

    def _finish_chunk(self, room: str, rooms: dict[str, progress.RoomProgress],
                      state: progress.RoomProgress, last: int) -> None:  # fmt: skip
        state.last_group, state.rewritten = last, {}
        rooms[room] = state
        if not self.settings.dry_run:
            progress.save_room(self.connection, room, last, chains.dump(state.levels))
        self.on_chunk(self.summary)

    def _verify_plan(self, changed: list[Step]) -> set[int]:
        """Groups whose planned state is not what PostgreSQL resolves for them now: never written."""
        now = db.digests(self.connection, [step.group for step in changed])
        failed = {step.group for step in changed if step.group in now and now[step.group] != step.digest}
        for group in sorted(failed):
            self._mismatch(group, "the state planned for it differs from the state it has")
        return failed

    def _mismatch(self, group: int, why: str) -> None:
        self.summary.verification_failures += 1
        log.error("state group %d left as it was: %s", group, why, extra={"state_group": group})

    def _pace(self) -> None:
        limit = self.settings.max_groups_per_second
        if limit is None:
            return
        wait = self._last_write + 1 / limit - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self._last_write = time.monotonic()

    def _write(
        self, room: str, step: Step, start: tuple[int, list[list[Any]]], rewritten: dict[int, int | None]
    ) -> bool:
        """One group in one transaction, with the room's progress: the chunk's start and the groups it
        has rewritten (each with Synapse's base; a run stopped here plans the chunk again on them);
        True when it committed, and then `rewritten` has the group."""
        self._pace()
        assert step.digest is not None  # only changed steps are written
        wanted = [step.group] if step.prev is None else [step.group, step.prev]
        synapse_base = rewritten.get(step.group, step.old_prev)  # rewritten again: still Synapse's
        try:
            with self.connection.transaction(), self.connection.cursor() as cursor:
                present, pending = db.lock_for_rewrite(cursor, wanted, self._pending_table)
                if step.group not in present or step.group in pending:
                    raise _Vanished(f"state group {step.group} is gone or pending deletion")
                if step.prev is not None and (step.prev not in present or step.prev in pending):
                    raise _Vanished(f"its new base {step.prev} is gone or pending deletion")
                db.rewrite(cursor, room, step.group, step.prev, step.rows)
                if self.settings.verify:
                    after = db.digest_now(cursor, step.group)
                    if after != step.digest:
                        raise VerificationFailed(f"after the rewrite it resolves to {after[0]} entries,"
                                                 f" not the {step.digest[0]} it had")  # fmt: skip
                progress.save_room(cursor, room, *start, {**rewritten, step.group: synapse_base})
        except VerificationFailed as exc:
            self._mismatch(step.group, str(exc))
            return False
        except _Vanished as exc:
            self.summary.skipped += 1
            log.info("state group %d of %s left: %s", step.group, room, exc,
                     extra={"state_group": step.group, "room_id": room})  # fmt: skip
            return False
        except _CONFLICTS as exc:
            self.summary.skipped += 1
            log.warning("state group %d of %s left as it was: %s", step.group, room, type(exc).__name__,
                        extra={"state_group": step.group, "room_id": room})  # fmt: skip
            return False
        rewritten[step.group] = synapse_base
        self.summary.rewritten += 1
        if self.settings.verify:
            self.summary.verified += 1
        return True


class _Vanished(Exception):
    pass
