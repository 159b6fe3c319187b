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
    """The job is stored but could not be handed to the queue yet."""

    status = 503
