"""Every error leaves the API as `{"error": {"code", "message"}}` with a fitting status."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from jobforge.errors import JobforgeError


class ApiError(Exception):
    """An HTTP error raised by the API layer itself (auth, limits, lookups)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def not_found(what: str, ref: str) -> ApiError:
    """Unknown, and another tenant's, look the same: the object's existence is not told."""
    return ApiError(404, f"{what}_not_found", f"{what.capitalize()} not found: {ref}")


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


def body(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


_DESCRIPTIONS = {
    400: "Malformed request (e.g. the body is not JSON)",
    401: "No API key, or an unknown or revoked one",
    403: "The key lacks the permission",
    404: "No such object (or it belongs to another tenant)",
    409: "The object's state does not allow this",
    413: "The request body or payload is too large",
    422: "Invalid fields",
}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error codes a route may answer with."""
    return {c: {"model": ErrorBody, "description": _DESCRIPTIONS[c]} for c in codes}


def _one_line(exc: RequestValidationError) -> tuple[int, str, str]:
    errors = exc.errors()
    first = errors[0] if errors else {}
    if first.get("type") == "json_invalid":
        reason = first.get("ctx", {}).get("error", "cannot parse")
        return 400, "malformed_json", f"Malformed JSON body: {reason}"
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
    return 422, "invalid", f"Invalid {where}: {first.get('msg', 'invalid value')}"


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        return body(exc.status, exc.code, exc.message)

    @app.exception_handler(JobforgeError)
    async def _jobforge(_: Request, exc: JobforgeError) -> JSONResponse:
        return body(exc.http_status, exc.code, str(exc).splitlines()[0] if str(exc) else exc.code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        kind = request.headers.get("content-type", "")
        whole_body = any(tuple(e.get("loc", ())) == ("body",) for e in exc.errors())
        if whole_body and "json" not in kind:
            message = (
                f"The body must be JSON (Content-Type: application/json), not {kind or 'none'!r}"
            )
            return body(400, "bad_content_type", message)
        return body(*_one_line(exc))

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return body(exc.status_code, code, str(exc.detail))
