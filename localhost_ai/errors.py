"""The one error type every layer raises; the API turns it into OpenAI's error shape."""

from __future__ import annotations

from typing import Any


class APIError(Exception):
    """An error meant for the client: an HTTP status plus OpenAI's error fields."""

    status = 500
    type = "server_error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        param: str | None = None,
        code: str | None = None,
        type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if type is not None:
            self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled whole (status, param, code), as it crosses from the body-parsing process."""
        return (_rebuild, (type(self), self.message, dict(self.__dict__)))

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequest(APIError):
    status = 400
    type = "invalid_request_error"


class AuthenticationError(APIError):
    status = 401
    type = "invalid_request_error"


class NotFound(APIError):
    status = 404
    type = "invalid_request_error"


class ModelNotFound(NotFound):
    def __init__(self, name: str | None, available: list[str]) -> None:
        names = ", ".join(sorted(available)) or "none"
        if name:
            message = f"The model '{name}' does not exist. Available models: {names}."
        else:
            message = f"No model was given and more than one can serve this request. Available models: {names}."
        super().__init__(message, param="model", code="model_not_found")


class PayloadTooLarge(APIError):
    status = 413
    type = "invalid_request_error"


class BackendError(APIError):
    """A model failed to load or run; the message names the model and what failed."""

    status = 500
    type = "server_error"


class NotReady(APIError):
    status = 503
    type = "server_error"


class QueueFull(APIError):
    """429: too many calls already wait for this model."""

    status = 429
    type = "rate_limit_error"


def _rebuild(cls: type[APIError], message: str, state: dict[str, Any]) -> APIError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


def short(exc: BaseException) -> str:
    """The first line of an error (at most 300 characters), for a message to a client."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
