"""How the ``rankssl`` command reports a mistake: one or two lines, no traceback.

Example:
    >>> print(short_error(CommandError("checkpoint 'x.pth' not found")))
    rankssl: error: checkpoint 'x.pth' not found
    (add --debug to see the full traceback)
"""

from __future__ import annotations

__all__ = ["CommandError", "short_error"]


class CommandError(Exception):
    """A mistake in the command line or its inputs; shown without a traceback."""


def short_error(exc: BaseException) -> str:
    """The lines the command prints for ``exc`` (with ``--debug`` it shows the traceback instead)."""
    message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    message = str(message).strip() or type(exc).__name__
    if isinstance(exc, (KeyError, TypeError, RuntimeError)) and not isinstance(exc, CommandError):
        message = f"{type(exc).__name__}: {message}"  # names a recipe entry or a component's argument
    return f"rankssl: error: {message}\n(add --debug to see the full traceback)"
