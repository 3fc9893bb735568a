"""Exceptions for a name or an index the user asked for that is not there.

A dataset, a volume of a dataset, an array in a container or a resolution level that does not
exist is bad input, not a bug: these exceptions are both the lookup error Python code expects
(``KeyError``, ``IndexError``) and a ``ValueError``, so the command line reports them as bad input
(``error: ...``, exit 2) while a plain ``KeyError`` from a bug keeps its traceback.
Not for: validating values (:mod:`vemkit._checks`).
"""

from __future__ import annotations

__all__ = ["UnknownNameError", "OutOfRangeError"]


class UnknownNameError(KeyError, ValueError):
    """A name (dataset, volume, array, notebook) that is not there; a ``KeyError`` and a ``ValueError``.

    Examples
    --------
    >>> err = UnknownNameError("no dataset named 'x'")
    >>> isinstance(err, KeyError) and isinstance(err, ValueError), str(err)
    (True, "no dataset named 'x'")
    """

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


class OutOfRangeError(IndexError, ValueError):
    """An index (a resolution level) beyond what exists; an ``IndexError`` and a ``ValueError``."""
