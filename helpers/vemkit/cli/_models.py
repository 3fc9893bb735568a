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
from ..predict import is_section_model, predict_volume
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


def model_options(text) -> dict:
    """``--model-options "points_per_side=16,min_area=50,link_iou=0.3"`` as keyword arguments.

    Examples
    --------
    >>> model_options("points_per_side=16, link_iou=0.5")
    {'points_per_side': 16, 'link_iou': 0.5}
    """
    out = {}
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--model-options takes KEY=VALUE pairs separated by commas, got {item!r}")
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"--model-options {key.strip()}: {value!r} is not a number") from None
        out[key.strip()] = int(number) if number.is_integer() and "." not in value else number
    return out


def _predict_generalist(args):
    image = open_volume(args.image, voxel_size=args.voxel_size, warn_missing_voxel_size=False)
    res = predict_volume(args.model, image, args.out, block=args.block, halo=args.halo, batch_size=args.batch_size,
                         device=args.device, tta=args.tta, amp=amp_value(args.amp), probabilities=args.probabilities,
                         resume=not args.no_resume, overwrite=args.overwrite, progress=not args.quiet,
                         model_options=model_options(args.model_options) if is_section_model(args.model) else None)
    unit = "sections" if is_section_model(args.model) else "blocks"
    print(f"predicted {res.blocks - res.blocks_skipped} of {res.blocks} {unit} with {args.model} on {res.device} "
          f"in {res.seconds:.1f} s")
    print_outputs(res)
    return 0


def extend_predict(sub) -> None:
    """Let ``vemkit predict`` run generalist models (registered once by :func:`vemkit.cli.build_parser`)."""
    parser = sub.choices["predict"]
    plain = parser.get_default("func")

    def run(args):
        if args.model_options and not is_section_model(args.model):
            raise ValueError("--model-options sets a section-by-section model: use it with --model sam-auto[:NAME] "
                             "or cellpose[:NAME]")
        return _predict_generalist(args) if is_generalist(args.model) or is_section_model(args.model) else plain(args)

    parser.add_argument("--model-options", metavar="KEY=VALUE,...",
                        help="with --model sam-auto: points_per_side (32), pred_iou_thresh (0.88), stability_thresh "
                             "(0.95), nms_iou (0.7), min_area (25 px), tile (1024 px), overlap (128); with --model "
                             "cellpose: diameter (px); both: link_iou (0.3)")
    parser.set_defaults(func=run)
    parser.description = ("--model takes a model directory, or a generalist model: mitonet, mitonet-mini, a MitoNet "
                          "name of `vemkit models list`, bioimageio:<id, DOI, URL or folder>, or sam-auto[:NAME] "
                          "(automatic SAM: every object of each section, linked across sections; NAME a SAM model "
                          "of `vemkit models list` or a checkpoint file, default microsam_vit_t_em_organelles), or "
                          "cellpose[:NAME] (Cellpose-SAM, needs the optional cellpose package).")


#: The commands of this module, in the order ``vemkit --help`` lists them.
COMMANDS = (add_models,)
