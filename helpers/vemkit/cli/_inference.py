"""``vemkit predict``, ``instances``, ``measure`` and ``evaluate``: from a model to scored, measured objects.

Not for: the computations (:mod:`vemkit.predict`, :mod:`vemkit.pixel_classifier`,
:mod:`vemkit.instances`, :mod:`vemkit.measure`, :mod:`vemkit.metrics`).
"""

from __future__ import annotations

import json
from pathlib import Path

from .._basemodels import resolve_model
from .._modeldir import UNET_KIND, model_kind
from ..instances import instances_blockwise
from ..io import open_volume
from ..measure import regionprops_blockwise, save_table
from ..metrics import evaluate
from ..neurons import METHODS, is_affinity_model, segment_neurons
from ..pixel_classifier import load_pixel_classifier
from ..predict import predict_volume
from ._options import add_common, amp_value, print_outputs, rescale_arg, triple_arg, voxel_arg

__all__ = ["COMMANDS"]


def add_predict(sub):
    p = sub.add_parser("predict", help="predict a whole volume with a model directory")
    p.add_argument("--model", required=True, help="model directory, or the name of a shipped base model (em2d-mito)")
    p.add_argument("--image", required=True)
    p.add_argument("--out", required=True,
                   help="OUT.ome.zarr: OME-Zarr (labels; with --probabilities the probabilities, the labels as "
                        "its label group); OUT.tif/.tiff: the labels as a TIFF with the voxel size (a U-Net "
                        "predicts into OUT.tif.partial.ome.zarr first, which a rerun resumes)")
    p.add_argument("--voxel-size", type=voxel_arg, metavar="Z,Y,X")
    p.add_argument("--probabilities", action="store_true",
                   help="write class probabilities (with the labels as its label group for networks)")
    p.add_argument("--block", type=triple_arg("--block"), metavar="Z,Y,X",
                   help="block per network call (default: planned)")
    p.add_argument("--halo", type=triple_arg("--halo", minimum=0), metavar="Z,Y,X",
                   help="context per side (default: the model's)")
    p.add_argument("--batch-size", type=int, help="blocks per network call (default: planned)")
    p.add_argument("--tta", action="store_true", help="average over flips (test-time augmentation)")
    p.add_argument("--rescale", type=rescale_arg, default=1.0, metavar="FACTOR|auto",
                   help="U-Nets: run the network on the image resized by FACTOR in y/x (> 1 magnifies; e.g. 0.5 when "
                   "the objects look twice as large in pixels as in the model's training data); 'auto' tries 0.5-2 on "
                   "a sample and keeps the factor the network is surest at (default 1)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="dask scheduler address (tcp://host:8786): spread blocks over its workers")
    p.add_argument("--no-resume", action="store_true", help="refuse to finish an interrupted run")
    p.add_argument("--agglomeration", choices=METHODS, default="mws",
                   help="affinity models: mws (mutex watershed) or mean (fragments + mean-affinity agglomeration)")
    p.add_argument("--threshold", type=float, default=0.5, help="affinity models, --agglomeration mean: merge threshold")
    add_common(p, device=True, amp=True, overwrite=True, quiet=True)
    p.set_defaults(func=run_predict)


def run_predict(args):
    args.model = str(resolve_model(args.model))  # a shipped base model's name works as its folder
    kind = model_kind(args.model)  # a missing or unknown model directory is the API's error
    image = open_volume(args.image, voxel_size=args.voxel_size, warn_missing_voxel_size=False)
    if args.rescale != 1.0 and (kind != UNET_KIND or is_affinity_model(args.model)):
        raise ValueError("--rescale applies to semantic U-Nets only (not to random forests, whose features have "
                         "their own scales, nor to affinity models, whose offsets are in image voxels)")
    if kind == UNET_KIND and is_affinity_model(args.model):  # neurons: affinities -> instance labels
        out = segment_neurons(args.model, image, args.out, method=args.agglomeration, threshold=args.threshold,
                              device=args.device, resume=not args.no_resume, overwrite=args.overwrite,
                              progress=not args.quiet, amp=amp_value(args.amp), block=args.block, halo=args.halo,
                              batch_size=args.batch_size, tta=args.tta)
        print(f"wrote neuron instance labels (uint64, {args.agglomeration}) of {image.shape} to {out}")
        return 0
    if kind == UNET_KIND:
        return _predict_network(args, image)
    clf = load_pixel_classifier(args.model)
    out = clf.predict_to(image, args.out, probabilities=args.probabilities, block=args.block,
                         device="cpu" if args.device == "auto" else args.device, overwrite=args.overwrite,
                         progress=not args.quiet)
    what = "class probabilities (uint8, 255 = 1.0)" if args.probabilities else "labels (0 = background)"
    print(f"wrote {what} of {image.shape} to {out}")
    return 0


def _predict_network(args, image):
    client = None
    if args.scheduler:
        from distributed import Client

        client = Client(args.scheduler)
    try:
        res = predict_volume(args.model, image, args.out, block=args.block, halo=args.halo,
                             batch_size=args.batch_size, device=args.device, tta=args.tta, amp=amp_value(args.amp),
                             probabilities=args.probabilities, client=client, resume=not args.no_resume,
                             overwrite=args.overwrite, progress=not args.quiet, rescale=args.rescale)
    finally:
        if client is not None:
            client.close()
    done = res.blocks - res.blocks_skipped
    print(f"predicted {done} of {res.blocks} blocks ({res.blocks_skipped} already done) on {res.device} in "
          f"{res.seconds:.1f} s ({res.voxels_per_second / 1e6:.2f} million voxels/s)")
    factor = res.parameters.get("rescale", 1.0)
    if args.rescale == "auto" or factor != 1.0:
        print(f"rescale: the network saw the image at {factor:g}x its size" + (" (chosen by 'auto')" if args.rescale == "auto" else ""))
    print_outputs(res)
    return 0


def add_instances(sub):
    p = sub.add_parser("instances", help="instance labels from a mask or probabilities, block by block")
    p.add_argument("--labels", required=True, help="semantic mask, probabilities (with --channel) or binary mask")
    p.add_argument("--out", required=True, help="OUT.ome.zarr or IMAGE.ome.zarr:/labels/NAME")
    p.add_argument("--method", choices=["cc", "watershed"], default="cc")
    p.add_argument("--class-id", type=int, help="which class of a semantic mask (default: any nonzero)")
    p.add_argument("--threshold", type=float, help="foreground threshold for probabilities")
    p.add_argument("--min-size-nm3", type=float)
    p.add_argument("--min-distance-nm", type=float, default=100.0, help="watershed seed spacing")
    p.add_argument("--block", type=triple_arg("--block"), metavar="Z,Y,X")
    p.add_argument("--voxel-size", type=voxel_arg, metavar="Z,Y,X")
    add_common(p, overwrite=True, quiet=True)
    p.set_defaults(func=run_instances)


def run_instances(args):
    src = open_volume(args.labels, voxel_size=args.voxel_size, warn_missing_voxel_size=False)
    vs = src.require_voxel_size("instance segmentation (sizes and distances are in nm)")
    out = instances_blockwise(
        src, args.out, method=args.method, block=args.block or (64, 256, 256), voxel_size=vs,
        class_id=args.class_id, threshold=args.threshold, min_size_nm3=args.min_size_nm3,
        min_distance_nm=args.min_distance_nm, overwrite=args.overwrite, progress=not args.quiet,
    )
    n = int(open_volume(out, warn_missing_voxel_size=False).data.max().compute())
    print(f"wrote {n} instances ({args.method}) to {out}")
    return 0


def add_measure(sub):
    p = sub.add_parser("measure", help="measure every object in physical units into a CSV/Parquet table")
    p.add_argument("--labels", required=True, help="instance labels")
    p.add_argument("--image", help="EM image for intensity statistics")
    p.add_argument("--out", required=True, help="table.csv or table.parquet")
    p.add_argument("--other", action="append", metavar="NAME=PATH",
                   help="another label volume: distance and contact area to it (repeatable)")
    p.add_argument("--skeleton", action="store_true", help="skeleton length and branch count")
    p.add_argument("--voxel-size", type=voxel_arg, metavar="Z,Y,X")
    add_common(p, overwrite=True, quiet=True)
    p.set_defaults(func=run_measure)


def run_measure(args):
    labels = open_volume(args.labels, voxel_size=args.voxel_size, warn_missing_voxel_size=False)
    vs = labels.require_voxel_size("measuring in physical units")
    image = open_volume(args.image, warn_missing_voxel_size=False) if args.image else None
    others = {}
    for item in args.other or []:
        name, _, path = item.partition("=")
        if not path:
            raise ValueError(f"--other takes NAME=PATH, got {item!r}")
        others[name] = open_volume(path, warn_missing_voxel_size=False)
    table = regionprops_blockwise(labels, image, voxel_size=vs, skeleton=args.skeleton,
                                  other_labels=others or None, progress=not args.quiet)
    out = save_table(table, args.out, overwrite=args.overwrite)
    print(f"measured {len(table)} objects ({len(table.columns)} columns, physical units from {vs} nm) -> {out}")
    return 0


def add_evaluate(sub):
    p = sub.add_parser("evaluate", help="score a prediction against ground truth into metrics.json")
    p.add_argument("--pred", required=True)
    p.add_argument("--truth", required=True)
    p.add_argument("--ignore", help="mask of voxels to ignore (nonzero = ignored)")
    p.add_argument("--kind", choices=["semantic", "instances"],
                   help="semantic classes or instance labels (default: semantic; inputs with more than "
                        "64 distinct labels are refused until --kind says which)")
    p.add_argument("--out", required=True, help="metrics.json")
    add_common(p, overwrite=True)
    p.set_defaults(func=run_evaluate)


def run_evaluate(args):
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{str(out)!r} already exists; pass --overwrite to replace it")
    pred = open_volume(args.pred, warn_missing_voxel_size=False)
    truth = open_volume(args.truth, warn_missing_voxel_size=False)
    ignore = None
    if args.ignore:
        ignore = open_volume(args.ignore, warn_missing_voxel_size=False).data.astype(bool)
    try:
        result = evaluate(pred.data, truth.data, kind=args.kind or "auto", ignore=ignore)
    except ValueError as err:
        raise ValueError(str(err).replace("kind='instances'", "--kind instances")
                         .replace("kind='semantic'", "--kind semantic")) from None
    result = {"pred": args.pred, "truth": args.truth, **result}
    out.write_text(json.dumps(result, indent=1, allow_nan=False))
    headline = {k: result[k] for k in ("mean_iou", "mean_ap", "adapted_rand_error", "vi") if k in result}
    print(f"{result['kind']} evaluation -> {out}: {headline}")
    return 0


#: The commands of this module, in the order ``vemkit --help`` lists them.
COMMANDS = (add_predict, add_instances, add_measure, add_evaluate)
