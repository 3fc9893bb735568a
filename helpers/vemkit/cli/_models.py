"""``vemkit models list | fetch | pin`` and generalist models in ``vemkit predict``.

``models list`` shows each generalist model of the manifest (name, task, size, licence, cached or
not); ``models fetch NAME`` downloads and verifies one; ``models pin NAME --sha256 HEX`` pins the
hash of a file whose publisher gives no SHA-256 (after you checked it against theirs).
:func:`extend_predict` lets ``vemkit predict --model`` take ``mitonet``, ``mitonet-mini``, a MitoNet
name of the manifest or ``bioimageio:<id, DOI, URL or folder>`` besides a model directory.

Not for: the models themselves (:mod:`vemkit.generalist`), blockwise inference (:mod:`vemkit.predict`).
"""

from __future__ import annotations

from ..generalist import fetch_model, is_cached, is_generalist, list_models, model_entry, pin_model
from ..io import open_volume
from ..predict import predict_volume
from ._options import add_common, amp_value, print_outputs

__all__ = ["COMMANDS", "extend_predict"]


def add_models(sub):
    p = sub.add_parser("models", help="generalist models (SAM, micro-sam, MitoNet): list, fetch, pin")
    msub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    ls = msub.add_parser("list", help="name, task, size, licence and whether it is cached")
    ls.set_defaults(func=run_list)
    f = msub.add_parser("fetch", help="download and verify a model into the cache")
    f.add_argument("name")
    add_common(f, quiet=True)
    f.set_defaults(func=run_fetch)
    pin = msub.add_parser("pin", help="pin the SHA-256 of a cached model whose publisher gives none")
    pin.add_argument("name")
    pin.add_argument("--sha256", required=True, help="64 hex digits, checked against the cached file")
    pin.set_defaults(func=run_pin)


def _size(entry) -> str:
    if entry.get("size"):
        return f"{entry['size'] / 1e6:.1f} MB"
    return (entry.get("size_note") or "?").replace("about ", "~")


def run_list(args):
    rows = [("name", "task", "size", "licence", "cached")]
    for name in list_models():
        e = model_entry(name)
        rows.append((name, e.get("task", ""), _size(e), e.get("licence", "?"), "yes" if is_cached(name) else "no"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    print("\nbioimage.io models: vemkit predict --model bioimageio:<id, DOI, URL or folder>")
    return 0


def run_fetch(args):
    path = fetch_model(args.name, progress=not args.quiet)
    e = model_entry(args.name)
    print(f"{args.name}: {path}\nlicence: {e.get('licence')}\ncite: {e.get('citation')}")
    return 0


def run_pin(args):
    path = pin_model(args.name, args.sha256)
    print(f"pinned {args.name} ({path}) to SHA-256 {args.sha256.lower()}")
    return 0


def _predict_generalist(args):
    image = open_volume(args.image, voxel_size=args.voxel_size, warn_missing_voxel_size=False)
    res = predict_volume(args.model, image, args.out, block=args.block, halo=args.halo, batch_size=args.batch_size,
                         device=args.device, tta=args.tta, amp=amp_value(args.amp), probabilities=args.probabilities,
                         resume=not args.no_resume, overwrite=args.overwrite, progress=not args.quiet)
    print(f"predicted {res.blocks - res.blocks_skipped} of {res.blocks} blocks with {args.model} on {res.device} "
          f"in {res.seconds:.1f} s")
    print_outputs(res)
    return 0


def extend_predict(sub) -> None:
    """Let ``vemkit predict`` run generalist models (registered once by :func:`vemkit.cli.build_parser`)."""
    parser = sub.choices["predict"]
    plain = parser.get_default("func")

    def run(args):
        return _predict_generalist(args) if is_generalist(args.model) else plain(args)

    parser.set_defaults(func=run)
    parser.description = ("--model takes a model directory, or a generalist model: mitonet, mitonet-mini, a MitoNet "
                          "name of `vemkit models list`, or bioimageio:<id, DOI, URL or folder>.")


#: The commands of this module, in the order ``vemkit --help`` lists them.
COMMANDS = (add_models,)
