"""`compress-state` console script: exit 0 done, 1 a verification failure, 2 bad configuration or
no connection, 3 another run holds the lock, 4 a database error during the run (what was committed
stays: each group is its own transaction)."""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType

import psycopg

from matrix_stack.services.compress_state import database as db
from matrix_stack.services.compress_state.compressor import Compressor
from matrix_stack.services.compress_state.config import load
from matrix_stack.services.compress_state.report import ProgressBar, push
from matrix_stack.shared.kit import logs
from matrix_stack.shared.outbox.conninfo import redact

log = logging.getLogger("compress_state")

EXIT_DONE, EXIT_VERIFICATION, EXIT_CONFIG, EXIT_LOCKED, EXIT_DATABASE = 0, 1, 2, 3, 4


def main(argv: list[str] | None = None) -> None:
    settings = load(argv)
    logs.configure(settings.log_level, json_lines=settings.log_json, secrets=settings.secrets())
    conninfo = settings.database_url.get_secret_value() if settings.database_url else ""
    password = settings.password.get_secret_value() if settings.password else None
    try:
        connection = db.connect(conninfo, password, settings.lock_timeout_seconds)
    except db.ConnectError as exc:
        print(f"compress-state: cannot connect to the database: {exc}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    with connection:
        if not db.has_table(connection, "state_groups_state"):
            print("compress-state: this database has no state_groups_state table: not Synapse's"
                  " (state) database", file=sys.stderr)  # fmt: skip
            sys.exit(EXIT_CONFIG)
        if not settings.dry_run and not db.try_lock(connection):
            print(f"compress-state: another run holds the lock: {db.lock_holder(connection)}; exiting",
                  file=sys.stderr)  # fmt: skip
            sys.exit(EXIT_LOCKED)
        show_bar = settings.progress_bar if settings.progress_bar is not None else sys.stderr.isatty()
        bar = ProgressBar(settings.chunks) if show_bar else None
        compressor = Compressor(connection, settings, on_chunk=bar.update if bar else lambda summary: None)

        def stop(signum: int, frame: FrameType | None) -> None:
            log.warning("%s: stopping after the state group in hand", signal.Signals(signum).name)
            compressor.stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        log.info("compressing: levels %s, chunks of %d groups, up to %d chunks%s%s",
                 ",".join(map(str, settings.levels)), settings.chunk_size, settings.chunks,
                 f", room {settings.room}" if settings.room else "",
                 ", dry run" if settings.dry_run else "")  # fmt: skip
        failure = None
        try:
            summary = compressor.run()
        except psycopg.Error as exc:  # the connection dropped, a statement was cancelled, a privilege
            summary, failure = (
                compressor.summary,
                str(exc).strip().splitlines()[0] if str(exc).strip() else "",
            )
        compressor.summary.interrupted = compressor.stopping
        if bar:
            bar.close()
    if failure is not None:
        secrets = [password] if password else []
        print(
            f"compress-state: database error, stopped: {redact(failure or 'unknown', secrets)}",
            file=sys.stderr,
        )
        code = EXIT_DATABASE
    else:
        code = EXIT_VERIFICATION if summary.verification_failures else EXIT_DONE
    print(summary.line(), flush=True)
    if settings.pushgateway_url:
        try:
            push(summary, settings.pushgateway_url, settings.pushgateway_job, code)
        except OSError as exc:
            log.warning("pushing metrics to %s failed: %s", settings.pushgateway_url, exc)
    sys.exit(code)


if __name__ == "__main__":
    main()
