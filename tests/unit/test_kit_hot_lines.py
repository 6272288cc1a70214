"""The kit's hot-path log lines (HotLines): the same JSON line an ordinary logger call writes, and
the ordinary call wherever the kit's configuration does not hold."""

from __future__ import annotations

import asyncio
import io
import logging
import re
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from matrix_stack.shared.kit import logs

FIELDS = {"dn": "uid=alice,ou=people,dc=example,dc=org", "code": 0, "ms": 1.25, "client": "hunter2-secret"}


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """The kit's logging, configured as a service has it, writing to a string. Configured again in
    the test's own body by `kit_only`: pytest adds its capturing handler to the root for each phase,
    and a handler of someone else's means the ordinary path."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    logs.configure("INFO", secrets=["hunter2-secret"])
    out = io.StringIO()
    handler = root.handlers[0]
    assert isinstance(handler, logs.LoopBatchingHandler)
    handler.setStream(out)
    try:
        yield out
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)


def kit_only() -> None:
    """Only the kit's handler on the root, as in a service (not pytest's too)."""
    root = logging.getLogger()
    root.handlers[:] = [handler for handler in root.handlers if isinstance(handler, logs.LoopBatchingHandler)]


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


def test_a_hot_line_is_the_line_the_logger_writes(stream: io.StringIO) -> None:
    kit_only()
    logger = logging.getLogger("matrix_stack.test.hot")
    logger.info("bind", extra=FIELDS)
    logs.HotLines(logger).info("bind", FIELDS)
    token = logs.request_id.set("req-1")
    try:
        logger.info("bind", extra=FIELDS)
        logs.HotLines(logger).info("bind", FIELDS)
    finally:
        logs.request_id.reset(token)
    written = lines(stream)
    assert len(written) == 4
    for line in written:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line.pop("ts"))
    assert list(written[0]) == ["level", "logger", "msg", "dn", "code", "ms", "client"]  # the same order
    assert written[0] == written[1]
    assert written[0]["client"] == "***"  # redacted alike
    assert written[2] == written[3] == {**written[0], "request_id": "req-1"}


def test_below_its_level_a_hot_line_is_not_written(stream: io.StringIO) -> None:
    kit_only()
    logger = logging.getLogger("matrix_stack.test.quiet")
    logger.setLevel(logging.WARNING)
    try:
        logs.HotLines(logger).info("bind", FIELDS)
    finally:
        logger.setLevel(logging.NOTSET)
    assert stream.getvalue() == ""


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_handler_of_its_own_gets_the_ordinary_record(stream: io.StringIO) -> None:
    kit_only()
    logger = logging.getLogger("matrix_stack.test.own")
    own = Collect()
    logger.addHandler(own)
    try:
        logs.HotLines(logger).info("bind", FIELDS)
    finally:
        logger.removeHandler(own)
    assert [(record.getMessage(), record.__dict__["dn"]) for record in own.records] == [
        ("bind", FIELDS["dn"])
    ]
    assert lines(stream)[0]["dn"] == FIELDS["dn"]  # and the root's handler still writes it


def test_a_filter_on_the_way_is_honoured(stream: io.StringIO) -> None:
    kit_only()
    logger = logging.getLogger("matrix_stack.test.filtered")
    drop = logging.Filter("somewhere.else")  # passes nothing from this logger
    logger.addFilter(drop)
    try:
        logs.HotLines(logger).info("bind", FIELDS)
    finally:
        logger.removeFilter(drop)
    assert stream.getvalue() == ""


def test_in_a_loop_hot_lines_share_a_write_and_an_ordinary_line_brings_them_out(stream: io.StringIO) -> None:
    kit_only()
    logger = logging.getLogger("matrix_stack.test.batched")

    async def run() -> list[list[str]]:
        seen = []
        logs.HotLines(logger).info("bind", {"n": 1})
        logs.HotLines(logger).info("bind", {"n": 2})
        await asyncio.sleep(0)  # a turn of the loop: the hot lines wait for company
        seen.append([line["msg"] for line in lines(stream)])
        await asyncio.sleep(logs.HOT_WAIT * 2)  # then they are written, in order
        seen.append([f"{line['msg']}{line.get('n', '')}" for line in lines(stream)])
        logs.HotLines(logger).info("bind", {"n": 3})
        logger.info("ordinary")  # is written at the end of this turn, and the hot line before it
        await asyncio.sleep(0)
        seen.append([f"{line['msg']}{line.get('n', '')}" for line in lines(stream)][2:])
        return seen

    assert asyncio.run(run()) == [[], ["bind1", "bind2"], ["bind3", "ordinary"]]


class Writes(io.StringIO):
    """A stream that keeps each write apart, as a pipe takes them."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


def test_lines_reach_the_stream_in_writes_a_pipe_never_splits(stream: io.StringIO) -> None:
    """Many lines in one turn (ldap-proxy's workers each write their audit lines to the one stderr):
    writes of at most PIPE_BUF bytes, each a run of whole lines, none lost or reordered."""
    kit_only()
    out = Writes()
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logs.LoopBatchingHandler)
    handler.setStream(out)
    logger = logging.getLogger("matrix_stack.test.piped")

    async def run() -> None:
        for n in range(400):
            logs.HotLines(logger).info("bind", {"n": n, "dn": "uid=émile,ou=people" if n % 7 else "x" * 5000})
        await asyncio.sleep(logs.HOT_WAIT * 2)

    asyncio.run(run())
    assert len(out.writes) > 10
    for piece in out.writes:
        assert piece.endswith("\n")
        pieces_lines = piece.splitlines()
        assert len(piece.encode()) <= logs.PIPE_BUF or len(pieces_lines) == 1  # a long line alone
    assert [line["n"] for line in lines(out)] == list(range(400))
