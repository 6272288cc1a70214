"""JSON logs with request ids, and secrets kept out of them."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import TextIO

import orjson

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

# Attributes every LogRecord has; anything else was passed with `extra=` and goes into the JSON.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "color_message",
}
_TOKEN_PATTERNS = [
    re.compile(r"(access_token=)[^&\s\"']+"),
    re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE),
    re.compile(r"(\"(?:access_token|password|secret|token)\"\s*:\s*\")[^\"]*"),
]


PIPE_BUF = 4096  # POSIX's least; Linux's own
HOT_WAIT = 0.05  # seconds a hot path's line may wait to share a write: ~20 writes a second of them
# Each token pattern needs one of these words; a line without them cannot match.
_TOKEN_WORDS = ("access_token", "bearer", "password", "secret", "token")


class Redactor:
    """Replaces known secret values and token-shaped strings with `***`."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        lowered = text.lower()
        if any(word in lowered for word in _TOKEN_WORDS):  # most lines have none: skip the patterns
            for pattern in _TOKEN_PATTERNS:
                text = pattern.sub(r"\1***", text)
        return text


class JsonFormatter(logging.Formatter):
    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    _second: int = -1
    _stamp: str = ""

    def _timestamp(self, created: float, msecs: float) -> str:
        second = int(created)
        if second != self._second:  # strftime once a second, not once a line
            self._second, self._stamp = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._stamp}.{int(msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        entry = self._entry(record.created, record.msecs, record.levelname, record.name, record.getMessage())
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return self.redact(orjson.dumps(entry, default=str).decode())

    def _entry(self, created: float, msecs: float, level: str, logger: str, msg: str) -> dict[str, object]:
        entry: dict[str, object] = {"ts": self._timestamp(created, msecs), "level": level, "logger": logger,
                                    "msg": msg}  # fmt: skip
        current = request_id.get()
        if current:
            entry["request_id"] = current
        return entry

    def line(self, level: str, logger: str, msg: str, fields: Mapping[str, object]) -> str:
        """The line `format` makes of a record with these `extra` fields, made without the record."""
        created = time.time()
        entry = self._entry(created, (created - int(created)) * 1000, level, logger, msg)
        entry.update(fields)
        return self.redact(orjson.dumps(entry, default=str).decode())


class TextFormatter(logging.Formatter):
    def __init__(self, redact: Redactor) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        extras = {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}
        line = super().format(record)
        if extras:
            line += " " + " ".join(f"{k}={v}" for k, v in extras.items())
        return self.redact(line)


class LoopBatchingHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Lines logged during one turn of the event loop reach the stream in one write at its end, so
    a busy service makes one system call per turn, not per line; a hot path's lines (HotLines) may
    wait a little longer, so a service that writes one per request (an audit line per LDAP bind)
    makes a few writes a second, not one per turn. Outside a running loop, and for errors, a line is
    written at once."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._lines: list[str] = []
        self._scheduled_on: asyncio.AbstractEventLoop | None = None  # a flush is due on this loop
        self._timer: asyncio.Handle | None = None  # that flush
        self._wait = 0.0  # how long that flush was set to wait

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self.add(line, record.levelno)

    def add(self, line: str, levelno: int, wait: float = 0.0) -> None:
        """A formatted line, written at the end of this turn of the loop, or `wait` seconds later
        with whatever else came by then (at once outside a loop, and for errors). The caller holds
        the handler's lock (`handle` does, for `emit`)."""
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        self._lines.append(line)
        if loop is None or levelno >= logging.ERROR:
            self._write()
        elif self._scheduled_on is not loop:  # none due, or due on a loop that has gone away
            if self._scheduled_on is not None:
                self._write()
            self._schedule(loop, wait)
        elif wait < self._wait:  # the flush due would keep this line waiting too long
            if self._timer is not None:
                self._timer.cancel()
            self._schedule(loop, wait)

    def _schedule(self, loop: asyncio.AbstractEventLoop, wait: float) -> None:
        self._scheduled_on, self._wait = loop, wait
        self._timer = loop.call_later(wait, self._flush_turn) if wait else loop.call_soon(self._flush_turn)

    def _flush_turn(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._scheduled_on = self._timer = None
            self._write()

    def _write(self) -> None:
        if self._lines:
            lines, self._lines = self._lines, []
            try:
                for piece in _pieces(lines):
                    self.stream.write(piece)
                    self.stream.flush()
            except Exception:
                self.handleError(logging.makeLogRecord({"msg": "writing log lines failed"}))

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._write()
            super().flush()


def _pieces(lines: list[str]) -> Iterator[str]:
    """The lines in writes of at most PIPE_BUF bytes, cut between lines (a longer line alone): the
    kernel never splits such a write to a pipe, so processes sharing one (ldap-proxy's workers, a
    container's stderr) never cut into each other's lines."""
    piece: list[str] = []
    size = 0
    for line in lines:
        length = (len(line) if line.isascii() else len(line.encode())) + 1
        if piece and size + length > PIPE_BUF:
            yield "\n".join(piece) + "\n"
            piece, size = [], 0
        piece.append(line)
        size += length
    if piece:
        yield "\n".join(piece) + "\n"


class HotLines:
    """INFO lines from a hot path (ldap-proxy's audit line per bind) made straight from their fields:
    a LogRecord costs ~15 µs to make, handle and format, the same JSON line ~4 µs without it; and
    written up to HOT_WAIT later, with the lines that came meanwhile, in one write. Taken only where
    the kit's configuration holds on the way up (the root's one batching handler with the JSON
    formatter, no filter, no other handler); anywhere else the line is an ordinary logger call, so
    what is written never differs."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger

    def info(self, msg: str, fields: Mapping[str, object]) -> None:
        logger = self.logger
        if not logger.isEnabledFor(logging.INFO):
            return
        kit = self._kit_handler()
        if kit is None:
            logger.info(msg, extra=fields)
            return
        handler, formatter = kit
        with handler.lock:  # type: ignore[union-attr]
            handler.add(formatter.line("INFO", logger.name, msg, fields), logging.INFO, HOT_WAIT)

    def _kit_handler(self) -> tuple[LoopBatchingHandler, JsonFormatter] | None:
        """The handler every line of this logger reaches (and its formatter), when it is the kit's
        alone."""
        node: logging.Logger | None = self.logger
        while node is not None:
            if node.filters or node.disabled:
                return None
            if node.handlers:
                handler = node.handlers[0]
                formatter = handler.formatter
                if (node.parent is not None or len(node.handlers) != 1 or handler.filters
                        or handler.level > logging.INFO or type(handler) is not LoopBatchingHandler
                        or type(formatter) is not JsonFormatter):  # fmt: skip
                    return None
                return handler, formatter
            if not node.propagate:
                return None
            node = node.parent
        return None


def configure(level: str = "INFO", *, json_lines: bool = True, secrets: Iterable[str] = ()) -> None:
    """Send all logs (ours, uvicorn's, nio's) to stderr through one redacting formatter."""
    redact = Redactor(secrets)
    # What no formatter here prints, logging need not work out for every record (the logging
    # HOWTO's optimisations): the caller's frame, thread and process.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = LoopBatchingHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(redact) if json_lines else TextFormatter(redact))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # Our own access log replaces uvicorn's (it has the request id, route and duration).
    logging.getLogger("uvicorn.access").disabled = True
    # nio logs every 429 and retry at WARNING; the outbox already reports those.
    logging.getLogger("nio").setLevel(max(logging.getLevelName(level), logging.ERROR))
