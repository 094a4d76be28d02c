"""Errors of batch scoring that are not input-contract errors (those come from ``service.errors``)."""

from __future__ import annotations

from service.errors import ServiceError


class ScoringInputError(ServiceError):
    """The scoring input or output argument is wrong: missing file, bad ``--key``, empty folder...

    Like every user error it carries exit code 2; the message says what was expected and what
    was received.
    """

    status_code = 400
    code = "invalid_scoring_input"
    exit_code = 2
