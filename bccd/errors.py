"""Errors that reach a person (CLI line, API problem detail): short, precise, no internals."""

from __future__ import annotations


class BccdError(Exception):
    """A request that cannot be carried out; ``str(exc)`` is the one-line reason."""

    status = 400


class NotFound(BccdError):
    status = 404


class Conflict(BccdError):
    status = 409


class Invalid(BccdError):
    status = 422


class Forbidden(BccdError):
    status = 403
