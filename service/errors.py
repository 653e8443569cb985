"""Domain errors of the service. They say what went wrong; ``service.api.errors`` alone
decides which HTTP status and headers each becomes."""

from __future__ import annotations


class ServiceError(Exception):
    """Base of every error a client can cause or be told about."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class LimitExceeded(ServiceError):
    """A request is over a configured size limit."""


class InvalidOption(ServiceError):
    """A decoding option is out of its allowed range."""


class NotReady(ServiceError):
    """The model is not loaded (yet, or any more)."""


class Busy(ServiceError):
    """The request was not accepted or waited too long: retrying later may succeed."""


class ClientGone(ServiceError):
    """The client closed the connection before its answer was ready; its work was dropped."""


class DecodeFailed(ServiceError):
    """The runtime failed on a batch; the service keeps serving."""


class Unauthorized(ServiceError):
    """No API key was presented although keys are configured."""


class Forbidden(ServiceError):
    """The presented API key is not one of the configured keys."""
