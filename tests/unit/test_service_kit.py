"""The kit's log redactor, on its own (the kit through a real service process:
tests/integration/test_service_kit.py)."""

from __future__ import annotations

from matrix_stack.shared.kit.logs import Redactor


def test_redactor() -> None:
    redact = Redactor(["hunter2-secret"])
    line = 'password hunter2-secret url /x?access_token=syt_abc&x=1 "Authorization": "Bearer syt_abc"'
    assert redact(line) == 'password *** url /x?access_token=***&x=1 "Authorization": "Bearer ***"'
