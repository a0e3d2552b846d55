"""The user errors: problems a user can fix, each said in one line that names the fix.

Every error the project raises about a user's input, parameters, data or state
derives from ``UserError``. Wherever one is raised (argument parsing, a task, a
Dask worker), the command line prints its message in one line and exits 2, with
no traceback (``flows.cli``). Anything else is a bug and keeps its traceback.

The subclasses say where the problem lies; each keeps the built-in base it had
(``ValueError``, ``KeyError``, ``RuntimeError``) so that callers catching those
still work.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix; ``str(error)`` is one line that says how."""

    def __str__(self) -> str:
        # KeyError would quote its message; a user error reads the same everywhere.
        return " ".join(str(self.args[0]).split()) if self.args else ""


class ParameterError(UserError, ValueError):
    """A parameter is out of range; the message names it and the allowed values."""


class DataError(UserError, ValueError):
    """Input data that cannot be used as it is: a damaged file, a bad image, a NaN."""


class StateError(UserError, RuntimeError):
    """Stored state (the registry, a champion, a snapshot) that cannot be used as it is."""


class MissingFileError(UserError, FileNotFoundError):
    """A file the run needs is not there; the message says which command makes it.

    Still a ``FileNotFoundError``, so callers that catch that keep working (not a
    ``DataError``: a class cannot be both a ``ValueError`` and an ``OSError`` and still
    be pickled back from a Dask worker).
    """
