"""Exceptions. Everything caused by the user's input derives from :class:`AutoMLError`.

The CLI prints an ``AutoMLError`` as one line and exits non-zero; any other exception is a bug.
"""

from __future__ import annotations

from sklearn.exceptions import NotFittedError as _SkNotFittedError


class AutoMLError(Exception):
    """Root of the errors caused by the user's input or configuration."""


class DataError(AutoMLError, ValueError):
    """The table cannot be read or cannot be used as given (missing target, empty table, ...)."""


class ConfigError(AutoMLError, ValueError):
    """A setting has a value that is not allowed (unknown metric, unknown search strategy, ...)."""


class SchemaError(DataError):
    """Rows given for prediction do not match the model's input schema.

    ``errors`` lists one ``{"field": column, "message": text}`` per problem found.
    """

    def __init__(self, message: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


class IntegrityError(AutoMLError):
    """A saved artifact does not match its recorded checksums, or its format is unknown."""


class NotFittedError(AutoMLError, _SkNotFittedError):
    """The object was used before ``fit`` (keeps scikit-learn's NotFittedError contract)."""


class CompileError(AutoMLError, RuntimeError):
    """A model could not be compiled on this machine (``automl compile``); the Predictor keeps
    predicting with its libraries' own code."""
