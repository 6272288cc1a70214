"""Responses as lk-jwt-service writes them: Go's json.Encoder output (HTML-escaped, a trailing
newline), `{"errcode","error"}` errors, and the CORS headers on every answer of a token endpoint."""

from __future__ import annotations

from starlette.responses import Response

from matrix_stack.services.livekit_jwt.hashing import go_json

CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST",
    "Access-Control-Allow-Headers": "Accept, Content-Type, Content-Length, Accept-Encoding, X-CSRF-Token",
}

NOT_JSON = ("M_NOT_JSON", "Error reading request")
UNAUTHORIZED = ("M_UNAUTHORIZED", "The request could not be authorised.")
INTERNAL = ("M_UNKNOWN", "Internal Server Error")
NO_ROOM = ("M_UNKNOWN", "Unable to create room on SFU")


def go_response(body: dict[str, str] | None, status: int = 200) -> Response:
    content = b"" if body is None else (go_json(body) + "\n").encode()
    return Response(content, status_code=status, headers={**CORS, "Content-Type": "application/json"})


def error(status: int, errcode: str, message: str) -> Response:
    return go_response({"errcode": errcode, "error": message}, status)


def bad_json(message: str) -> Response:
    return error(400, "M_BAD_JSON", message)
