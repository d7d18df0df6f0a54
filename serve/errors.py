"""OpenAI-style error bodies: `{"error": {"message", "type", "param", "code"}}` with the right HTTP status.

Every refusal of the endpoint goes through `ApiError`, so clients (the `openai` package included) see the
same shape whatever failed: auth (401), validation (400), unknown route (404), engine failure (500).
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def invalid(message: str, param: str | None = None, code: str = "invalid_value") -> ApiError:
    """A 400 for a request that is well-formed JSON but asks for something the server refuses."""
    return ApiError(400, message, param=param, code=code)


def unauthorized(message: str) -> ApiError:
    return ApiError(401, message, type="authentication_error", code="invalid_api_key")


_BRANCH_LABELS = {"str", "int", "float", "bool", "list", "dict", "none"}


def _is_branch_label(part: Any) -> bool:
    """pydantic names the alternative of a union it tried (`str`, `list[tagged-union[...]]`) in the location."""
    return isinstance(part, str) and (part in _BRANCH_LABELS or "[" in part)


def pydantic_errors_to_api_error(errors: list[dict[str, Any]]) -> ApiError:
    """The most specific validation error (the deepest location: for a union, the alternative that got furthest,
    e.g. an unknown content part type rather than "content is not a string"), its location written as the
    OpenAI `param` (e.g. `messages.0.content.0`) without pydantic's union branch labels."""
    first = max(errors, key=lambda e: len(e.get("loc", ()))) if errors else {"loc": (), "msg": "invalid request"}
    loc = [str(p) for p in first.get("loc", ()) if p != "body" and not _is_branch_label(p)]
    param = ".".join(loc) or None
    message = f"{param}: {first['msg']}" if param else str(first["msg"])
    return invalid(message, param=param, code=str(first.get("type", "invalid_value")))
