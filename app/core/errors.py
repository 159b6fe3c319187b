"""Errors the studio shows to people: each maps to a 4xx answer with its message."""

from __future__ import annotations


class StudioError(Exception):
    """A clear, user-facing refusal; ``status`` is the HTTP status the API answers with."""

    status = 400


class NotFound(StudioError):
    status = 404


class Forbidden(StudioError):
    status = 403


class Conflict(StudioError):
    status = 409


class BrokerUnavailable(StudioError):
    """The broker could not be reached; ``job_id`` names the job that is stored but not
    yet handed to the queue (None for other tasks)."""

    status = 503

    def __init__(self, message: str, job_id: int | None = None) -> None:
        super().__init__(message)
        self.job_id = job_id


class TooLarge(StudioError):
    """A request or a piece of work over a size limit that a setting names."""

    status = 413


class TooMany(StudioError):
    """Over a rate or count limit; ``retry_after`` is in seconds when waiting helps."""

    status = 429

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
