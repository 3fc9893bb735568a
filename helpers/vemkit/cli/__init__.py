"""The ``vemkit`` command line: the package's steps without a notebook.

Each sub-command is a thin wrapper over one public function; run ``vemkit COMMAND --help``. Its
arguments sit beside its handler, one module per group: :mod:`._data` (info, fetch, convert),
:mod:`._training` (train, pretrain, adapt, export), :mod:`._inference` (predict, instances, measure,
evaluate) and :mod:`._tour` (tour); :mod:`._options` holds the options they share.

Errors: the Python API checks every value; :func:`main` reports its exceptions for bad input
(:data:`USER_ERRORS`) as ``error: ...`` with exit status 2. Anything else (a ``KeyError`` or
``TypeError`` from a bug) keeps its traceback.
Not for: logic of its own (that lives in the modules it calls).
"""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from . import _data, _inference, _models, _tour, _training

__all__ = ["main", "build_parser"]

#: Exceptions the API raises for bad input, files that are missing or in the way, or no network.
#: (``vemkit._errors`` makes unknown names and levels ValueErrors too.)
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError,
               PermissionError, ConnectionError)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``vemkit`` command."""
    parser = argparse.ArgumentParser(
        prog="vemkit",
        description="vemkit: from a raw volume-EM stack to measured organelles.",
    )
    parser.add_argument("--version", action="version", version=f"vemkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in (*_data.COMMANDS, *_training.COMMANDS, *_inference.COMMANDS, *_models.COMMANDS, *_tour.COMMANDS):
        add(sub)
    _models.extend_predict(sub)  # generalist models (MitoNet, bioimage.io) in `vemkit predict`
    return parser


def main(argv=None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
