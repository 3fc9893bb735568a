"""What several ``vemkit`` commands share: the common options, argument types, annotation loading.

Not for: checking values (the Python API does that; the command line only reports its errors).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .._checks import triple
from .._voxel import parse_voxel_size
from ..annotate import open_annotations
from ..io import open_volume

__all__ = ["add_common", "add_volume_args", "amp_value", "load_annotations", "print_outputs", "rescale_arg", "triple_arg",
           "voxel_arg"]

#: The one help text of each common option.
COMMON_HELP = {
    "device": "auto (CUDA, MPS, else CPU; the default), cpu, cuda, cuda:N or mps",
    "amp": "mixed precision: auto = bf16/fp16 on CUDA, bf16 on a CPU with AMX, else float32; off = float32",
    "overwrite": "replace an existing output (never done unasked)",
    "quiet": "no progress bars or plans: only the result",
}


def add_common(parser, *, device=False, amp=False, overwrite=False, quiet=False):
    """Add the options many commands share, each with its one default and help text."""
    if device:
        parser.add_argument("--device", default="auto", help=COMMON_HELP["device"])
    if amp:
        parser.add_argument("--amp", default="auto", choices=["auto", "bf16", "fp16", "off"], help=COMMON_HELP["amp"])
    if overwrite:
        parser.add_argument("--overwrite", action="store_true", help=COMMON_HELP["overwrite"])
    if quiet:
        parser.add_argument("--quiet", action="store_true", help=COMMON_HELP["quiet"])


def amp_value(value):
    """The --amp choice as the ``amp`` argument of the Python API (``off`` -> ``False``)."""
    return False if value == "off" else value


def voxel_arg(text):
    """Argument type of a voxel size ``Z,Y,X`` in nm (:func:`vemkit._voxel.parse_voxel_size`)."""
    try:
        return parse_voxel_size(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def rescale_arg(text):
    """Argument type of ``--rescale``: a size factor or ``auto`` (:func:`vemkit.predict.check_rescale`)."""
    from ..predict import check_rescale

    try:
        return check_rescale(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def triple_arg(name: str, minimum: int = 1):
    """Argument type of three integers ``Z,Y,X`` >= ``minimum`` (:func:`vemkit._checks.triple`)."""

    def parse(text):
        try:
            return triple(text.split(","), name, minimum=minimum)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{name} must be three integers >= {minimum} Z,Y,X, got {text!r}") from None

    return parse


def add_volume_args(parser):
    """--voxel-size, --level and --channel of a command that reads one volume file."""
    parser.add_argument("--voxel-size", type=voxel_arg, metavar="Z,Y,X", help="voxel size in nm; overrides the file's")
    parser.add_argument("--level", type=int, default=0, help="resolution level of a multiscale file")
    parser.add_argument("--channel", type=int, default=None, help="channel to take from multichannel/RGB files")


def load_annotations(path, classes):
    """An annotation store (zarr written by vemkit.annotate) or a label image file (0 = unlabelled).

    Returns the annotations and their class names (``classes``, comma-separated, for a label image;
    default ``background,foreground``).
    """
    store = Path(path)
    if store.is_dir() and ((store / "zarr.json").exists() or (store / ".zarray").exists()):
        try:
            ann = open_annotations(store)
            return ann, ann.classes
        except ValueError:
            pass
    labels = open_volume(path, warn_missing_voxel_size=False)
    return labels.data, [c.strip() for c in (classes or "background,foreground").split(",")]


def print_outputs(result) -> None:
    """Print where a prediction (:class:`vemkit.predict.PredictionResult`) wrote its probabilities and labels."""
    if result.probabilities:
        print(f"probabilities: {result.probabilities}")
    if result.labels:
        print(f"labels: {result.labels}")
