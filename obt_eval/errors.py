"""Errors a user can cause, each carrying what to do about it."""

from __future__ import annotations


class ObtEvalError(Exception):
    """A problem the user can fix; the message says what happened and what to do.

    The CLI prints these without a traceback and exits with status 2.
    """

    def __init__(self, message: str, hint: str | None = None):
        self.hint = hint
        super().__init__(f"{message}\n  what to do: {hint}" if hint else message)


class BadInputError(ObtEvalError):
    """An input file, table or argument is unusable."""


class NotFoundError(ObtEvalError):
    """A named corpus, store, encoder or checkpoint does not exist."""
