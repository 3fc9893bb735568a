"""``vemkit tour``: the main job, notebooks 01 to 05 in order with an HTML report.

Not for: running the notebooks (:mod:`vemkit.tour`).
"""

from __future__ import annotations

import sys

from ..tour import TourError, tour
from ._options import add_common

__all__ = ["COMMANDS"]


def add_tour(sub):
    p = sub.add_parser("tour", help="the main job: run notebooks 01-05 in order and write an HTML report")
    p.add_argument("--out", default="outputs/tour", help="folder for the report, executed notebooks and outputs")
    p.add_argument("--dataset", help="drosophila_vnc_sstem (default; the synthetic phantom when it cannot be had), "
                                     "another dataset with mitochondria labels, or synthetic")
    p.add_argument("--quick", action="store_true", help="the few-minutes version: every notebook with QUICK=True (small crop, "
                                                         "short training budgets)")
    p.add_argument("--offline", action="store_true", help="never download: use the cache, else the phantom")
    p.add_argument("--notebooks", help="folder of the notebooks (default: the installed or checked-out ones)")
    add_common(p, device=True, overwrite=True, quiet=True)
    p.set_defaults(func=run_tour)


def run_tour(args):
    command = " ".join(["vemkit tour", f"--out {args.out}", *([f"--dataset {args.dataset}"] if args.dataset else []),
                        f"--device {args.device}",
                        *[f"--{k}" for k in ("quick", "offline", "overwrite") if getattr(args, k)]])
    try:
        res = tour(args.out, args.dataset, device=args.device, quick=args.quick, offline=args.offline,
                   overwrite=args.overwrite, notebooks=args.notebooks, progress=not args.quiet, command=command)
    except TourError as err:  # a notebook failed: not bad input
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args.quiet:  # otherwise the tour's last line named it
        print(f"report: {res.report}")
    return 0


#: The commands of this module.
COMMANDS = (add_tour,)
