"""Responses every service uses unless its protocol says otherwise."""

from __future__ import annotations

from pydantic import ValidationError
from starlette.responses import JSONResponse

from matrix_stack.shared.kit.settings import first_error


def error(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status)


def validation_detail(exc: ValidationError) -> str:
    """`where: what` for the first problem of a request body (`body` when it is the whole body)."""
    location, message = first_error(exc)
    return f"{'.'.join(location) or 'body'}: {message}"


def invalid_payload(exc: ValidationError) -> JSONResponse:
    return error(400, "invalid_payload", validation_detail(exc))


def not_durable() -> JSONResponse:
    return error(503, "not_durable", "the message could not be stored; try again")
