"""The ``vemkit`` command line: the package's steps without a notebook.

Each sub-command is a thin wrapper over one public function; run ``vemkit COMMAND --help``. Its
arguments sit beside its handler, one module per group: :mod:`._data` (info, fetch, convert),
:mod:`._training` (train, pretrain, adapt, export), :mod:`._inference` (predict, instances, measure,
evaluate) and :mod:`._tour` (tour); :mod:`._options` holds the options they share.

Errors: the Python API checks every value; :func:`main` reports its exceptions for bad input
(:data:`USER_ERRORS`) as ``error: ...`` with exit status 2. Anything else (a ``KeyError`` or
``TypeError`` from a bug) keeps its traceback. Ctrl-C prints what to do next
(:func:`interrupted_message`, e.g. "run the same command again to resume") and exits with 130.
Not for: logic of its own (that lives in the modules it calls).
"""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from .._modeldir import UNET_KIND, model_kind
from ..generalist import OptionalDependencyError
from . import _data, _inference, _models, _tour, _training

__all__ = ["main", "build_parser", "interrupted_message"]

#: Exceptions the API raises for bad input, files that are missing or in the way, or no network;
#: and the file system's own refusals (OSError: a read-only or full disk); an optional package that
#: is not installed. (``vemkit._errors`` makes unknown names and levels ValueErrors too.)
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError,
               PermissionError, ConnectionError, OSError, OptionalDependencyError)
#: The exit status after Ctrl-C (128 + SIGINT, as shells report it).
INTERRUPTED = 130


def _resumes(args) -> bool:
    """Whether running the interrupted command again finishes it instead of starting over."""
    if args.command == "predict":  # a U-Net prediction keeps a log of finished blocks
        if getattr(args, "no_resume", False):
            return False
        try:
            return model_kind(args.model) == UNET_KIND
        except (ValueError, OSError):
            return False
    return args.command == "train" and getattr(args, "method", None) == "unet"  # from its last checkpoint


def interrupted_message(args) -> str:
    """What :func:`main` prints after Ctrl-C: how to go on with the command ``args`` describes.

    Examples
    --------
    >>> interrupted_message(argparse.Namespace(command="convert", overwrite=False))
    'interrupted - nothing was finished: run the same command again, with --overwrite if it says the output exists'
    >>> interrupted_message(argparse.Namespace(command="info"))
    'interrupted'
    """
    if _resumes(args):
        return "interrupted - run the same command again to resume"
    if getattr(args, "overwrite", None) is not None:
        return ("interrupted - nothing was finished: run the same command again, with --overwrite if it says "
                "the output exists")
    return "interrupted"


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
    except KeyboardInterrupt:
        print(f"\n{interrupted_message(args)}", file=sys.stderr)
        return INTERRUPTED
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
