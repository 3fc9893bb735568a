"""The ``vemkit`` command line: the package's steps without a notebook.

Each sub-command is a thin wrapper over one public function; run ``vemkit COMMAND --help``.
Not for: logic of its own (that lives in the modules it calls).
"""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["main", "build_parser"]


def _volume_summary(vol) -> dict:
    data = vol.data
    return {
        "source": vol.source,
        "format": vol.metadata.get("format"),
        "shape_zyx": list(vol.shape),
        "dtype": str(vol.dtype),
        "voxel_size_nm_zyx": list(vol.voxel_size) if vol.voxel_size else None,
        "voxel_size_from_file": bool(vol.metadata.get("voxel_size_from_file")),
        "anisotropy_z_over_xy": round(vol.anisotropy, 3) if vol.anisotropy else None,
        "physical_size_um_zyx": [round(n * v / 1000, 4) for n, v in zip(vol.shape, vol.voxel_size)]
        if vol.voxel_size else None,
        "chunks_zyx": [int(c[0]) for c in data.chunks],
        "size_bytes": int(vol.nbytes),
        "levels": vol.metadata.get("levels", 1),
    }


def _cmd_info(args):
    from .io import open_volume

    vol = open_volume(args.path, voxel_size=args.voxel_size, level=args.level, channel=args.channel,
                      warn_missing_voxel_size=False)
    info = _volume_summary(vol)
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    width = max(len(k) for k in info)
    for k, v in info.items():
        if k == "voxel_size_nm_zyx" and v is None:
            v = "UNKNOWN (the file does not say; pass --voxel-size Z,Y,X)"
        if k == "size_bytes":
            v = f"{v} ({v / 2**30:.3f} GiB)"
        print(f"{k:<{width}}  {v}")
    return 0


def _cmd_fetch(args):
    from .datasets import fetch, get_entry, list_datasets

    if args.list or not args.name:
        for name in list_datasets():
            e = get_entry(name)
            sizes = [f.get("size") for f in e["files"]]
            size = f"{sum(sizes) / 1e6:8.1f} MB" if all(sizes) else f"{'size ?':>11}"
            loads = "" if e.get("volumes") else "  [fetch only]"
            print(f"{name:<22} {e.get('modality', ''):<9} {size}  {e['title']}{loads}")
        return 0
    folder = fetch(args.name, progress=not args.quiet)
    entry = get_entry(args.name)
    print(f"{args.name}: {len(entry['files'])} files verified (SHA-256) in {folder}")
    print(f"licence: {entry.get('licence')}\ncite: {entry.get('citation')}")
    return 0


def _cmd_convert(args):
    from .io import open_volume, write_ome_zarr

    vol = open_volume(args.input, voxel_size=args.voxel_size, level=args.level, channel=args.channel,
                      warn_missing_voxel_size=False)
    if vol.voxel_size is None:
        print(
            f"error: {args.input} does not say its voxel size; pass --voxel-size Z,Y,X (nm). "
            "vemkit never assumes one.",
            file=sys.stderr,
        )
        return 2
    out = write_ome_zarr(
        vol, args.output, chunks=args.chunks, levels=args.levels, version=args.ome_version,
        overwrite=args.overwrite, memory_limit=args.memory, progress=not args.quiet,
    )
    print(f"wrote {out} ({vol.shape} {vol.dtype}, voxel size {vol.voxel_size} nm, OME-Zarr {args.ome_version})")
    return 0


def _load_annotations_for_training(args, image):
    """An annotation store (zarr written by vemkit.annotate) or a label image file (0 = unlabelled)."""
    from pathlib import Path

    from .annotate import open_annotations
    from .io import open_volume

    path = Path(args.annotations)
    if path.is_dir() and ((path / "zarr.json").exists() or (path / ".zarray").exists()):
        try:
            ann = open_annotations(path)
            return ann, ann.classes
        except ValueError:
            pass
    labels = open_volume(args.annotations, warn_missing_voxel_size=False)
    classes = [c.strip() for c in (args.classes or "background,foreground").split(",")]
    return labels.data, classes


def _cmd_train(args):
    from .features import FeatureConfig
    from .io import open_volume
    from .pixel_classifier import PixelClassifier

    image = open_volume(args.image, voxel_size=args.voxel_size, warn_missing_voxel_size=False)
    annotations, classes = _load_annotations_for_training(args, image)
    if args.method == "unet":
        return _train_unet(args, image, annotations, classes)
    features = FeatureConfig(mode=args.mode) if args.mode else None
    clf = PixelClassifier(classes=classes, features=features, n_estimators=args.trees, seed=args.seed)
    clf.fit(image, annotations, device=args.device, progress=not args.quiet)
    out = clf.save(args.out, overwrite=args.overwrite)
    counts = ", ".join(f"{k}: {v}" for k, v in clf.training["annotated_voxels"].items())
    print(f"trained a random forest on {counts} annotated voxels ({clf.training['n_features']} features); saved {out}")
    return 0


def _train_unet(args, image, annotations, classes):
    from pathlib import Path

    from .train import finetune, plan_training

    out = Path(args.out)
    if out.exists() and (out / "config.json").exists() and not args.overwrite:
        print(f"error: {out} already holds a model; pass --overwrite or choose another --out", file=sys.stderr)
        return 2
    if args.minutes is None and args.iterations is None:
        args.minutes = 10.0
    base = None if args.base in (None, "none") else args.base
    overrides = {}
    if args.ndim:
        overrides["ndim"] = args.ndim
    plan = plan_training(image, annotations, device=args.device, base=base, **overrides)
    if not args.quiet:
        print(plan)
    model = finetune(image, annotations, classes=classes, base=base, out=out, plan=plan, minutes=args.minutes,
                     iterations=args.iterations, device=args.device, seed=args.seed, overwrite=args.overwrite,
                     amp=_amp(args.amp), extra_targets=tuple(args.extra_targets.split(",")) if args.extra_targets else (),
                     progress=not args.quiet)
    rec = model.training
    val = f", validation IoU {rec['final_val_iou']:.3f}" if rec.get("final_val_iou") is not None else ""
    print(f"trained a {plan.ndim}D U-Net ({'from ' + str(base) if base else 'from scratch'}) for {rec['iterations']} "
          f"iterations in {rec['seconds'] / 60:.1f} min on {rec['device']}{val}; saved {out}")
    return 0


def _amp(value):
    """The --amp choice as the amp argument of the Python API."""
    return False if value == "off" else value


def _add_amp(parser):
    parser.add_argument("--amp", default="auto", choices=["auto", "bf16", "fp16", "off"],
                        help="mixed precision: auto = bf16/fp16 on CUDA, bf16 on a CPU with AMX, else float32; "
                             "off = float32")


def _cmd_pretrain(args):
    from .pretrain import pretrain

    model = pretrain(args.out, sources=tuple(args.sources.split(",")),
                     vnc_sections=[int(v) for v in args.vnc_sections.split(",")] if args.vnc_sections else None,
                     minutes=args.minutes, iterations=args.iterations, model_size=args.model_size, patch=args.patch,
                     batch_size=args.batch_size, device=args.device, seed=args.seed, amp=_amp(args.amp),
                     progress=not args.quiet)
    print(f"pretrained {model.training['iterations']} iterations in {model.training['seconds'] / 60:.1f} min; "
          f"saved {args.out} (see its MODEL_CARD.md)")
    return 0


def _cmd_adapt(args):
    from pathlib import Path

    from .adapt import adapt
    from .io import open_volume

    out = Path(args.out)
    if out.exists() and (out / "config.json").exists() and not args.overwrite:
        print(f"error: {out} already holds a model; pass --overwrite or choose another --out", file=sys.stderr)
        return 2
    source = open_volume(args.source, voxel_size=args.source_voxel_size, warn_missing_voxel_size=False)
    target = open_volume(args.target, voxel_size=args.target_voxel_size, warn_missing_voxel_size=False)
    annotations = None
    if args.method in ("ynet", "dann"):
        if not args.source_annotations:
            print(f"error: --method {args.method} trains on the labelled source: pass --source-annotations",
                  file=sys.stderr)
            return 2
        args.annotations = args.source_annotations
        annotations, _ = _load_annotations_for_training(args, source)
    if args.minutes is None and args.iterations is None:
        args.minutes = 10.0
    model = adapt(args.model, source, annotations, target, method=args.method, out=out, minutes=args.minutes,
                  iterations=args.iterations, device=args.device, seed=args.seed, overwrite=args.overwrite,
                  progress=not args.quiet)
    rec = model.training["adaptation"]
    done = f"{rec['iterations']} iterations in {rec['seconds'] / 60:.1f} min" if rec.get("iterations") else "no training"
    print(f"adapted with {args.method} ({done}); saved {out}")
    if model.voxel_size and target.voxel_size:
        zoom = min(target.voxel_size[1:]) / min(model.voxel_size[1:])
        if abs(zoom - 1) > 0.2:
            print(f"note: the target's pixels are {zoom:.2f}x the model's; predict on the target resampled to "
                  f"{min(model.voxel_size[1:]):g} nm (vemkit.domain.resample_sections), as it was adapted")
    return 0


def _cmd_export(args):
    import json

    from .export import export_bioimageio, validate_bioimageio

    out = export_bioimageio(args.model, args.out, name=args.name, authors=args.author or None,
                            overwrite=args.overwrite)
    summary = validate_bioimageio(out)
    print(json.dumps(summary, indent=1))
    print(f"wrote the bioimage.io model package {out} ({summary['status']})")
    return 0


def _cmd_predict(args):
    import json
    from pathlib import Path

    from .io import open_volume

    cfg_path = Path(args.model) / "config.json"
    if not cfg_path.exists():
        print(f"error: {args.model} is not a vemkit model directory (no config.json)", file=sys.stderr)
        return 2
    kind = json.loads(cfg_path.read_text()).get("kind")
    image = open_volume(args.image, voxel_size=args.voxel_size, warn_missing_voxel_size=False)
    if kind == "vemkit.unet":
        return _predict_network(args, image)
    if kind != "vemkit.pixel_classifier":
        print(f"error: models of kind {kind!r} cannot be run by this version of vemkit predict", file=sys.stderr)
        return 2
    from .pixel_classifier import load_pixel_classifier

    clf = load_pixel_classifier(args.model)
    out = clf.predict_to(image, args.out, probabilities=args.probabilities, block=args.block,
                         device="cpu" if args.device == "auto" else args.device, overwrite=args.overwrite,
                         progress=not args.quiet)
    what = "class probabilities (uint8, 255 = 1.0)" if args.probabilities else "labels (0 = background)"
    print(f"wrote {what} of {image.shape} to {out}")
    return 0


def _predict_network(args, image):
    from .predict import predict_volume

    client = None
    if args.scheduler:
        from distributed import Client

        client = Client(args.scheduler)
    try:
        res = predict_volume(args.model, image, args.out, block=args.block, halo=args.halo,
                             batch_size=args.batch_size, device=args.device, tta=args.tta, amp=_amp(args.amp),
                             probabilities=args.probabilities, client=client, resume=not args.no_resume,
                             overwrite=args.overwrite, progress=not args.quiet)
    finally:
        if client is not None:
            client.close()
    done = res.blocks - res.blocks_skipped
    print(f"predicted {done} of {res.blocks} blocks ({res.blocks_skipped} already done) on {res.device} in "
          f"{res.seconds:.1f} s ({res.voxels_per_second / 1e6:.2f} million voxels/s)")
    if res.probabilities:
        print(f"probabilities: {res.probabilities}")
    if res.labels:
        print(f"labels: {res.labels}")
    return 0


def _cmd_instances(args):
    from .instances import instances_blockwise
    from .io import open_volume

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


def _cmd_measure(args):
    from .io import open_volume
    from .measure import regionprops_blockwise, save_table

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


def _cmd_evaluate(args):
    from pathlib import Path

    from .io import open_volume
    from .metrics import evaluate

    pred = open_volume(args.pred, warn_missing_voxel_size=False)
    truth = open_volume(args.truth, warn_missing_voxel_size=False)
    ignore = None
    if args.ignore:
        ignore = open_volume(args.ignore, warn_missing_voxel_size=False).data.astype(bool)
    result = evaluate(pred.data, truth.data, kind=args.kind, ignore=ignore)
    result = {"pred": args.pred, "truth": args.truth, "kind": args.kind, **result}
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{str(out)!r} already exists; pass --overwrite to replace it")
    out.write_text(json.dumps(result, indent=1, allow_nan=False))
    headline = {k: result[k] for k in ("mean_iou", "mean_ap", "adapted_rand_error", "vi") if k in result}
    print(f"{args.kind} evaluation -> {out}: {headline}")
    return 0


def _cmd_tour(args):
    from .tour import TourError, tour

    command = " ".join(["vemkit tour", f"--out {args.out}", *([f"--dataset {args.dataset}"] if args.dataset else []),
                        f"--device {args.device}", *[f"--{k}" for k in ("quick", "offline", "overwrite") if getattr(args, k)]])
    try:
        res = tour(args.out, args.dataset, device=args.device, quick=args.quick, offline=args.offline,
                   overwrite=args.overwrite, notebooks=args.notebooks, progress=not args.quiet, command=command)
    except PermissionError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except TourError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"report: {res.report}")
    return 0


def _triple(kind):
    def parse(text):
        from ._voxel import parse_voxel_size

        if kind == "voxel":
            return parse_voxel_size(text)
        try:
            vals = tuple(int(p) for p in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected Z,Y,X integers, got {text!r}") from None
        if len(vals) != 3 or min(vals) < (0 if kind == "int0" else 1):
            what = "non-negative" if kind == "int0" else "positive"
            raise argparse.ArgumentTypeError(f"expected three {what} integers Z,Y,X, got {text!r}")
        return vals

    def wrapped(text):
        try:
            return parse(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    return wrapped


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``vemkit`` command."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="vemkit",
        description="vemkit: from a raw volume-EM stack to measured organelles.",
    )
    parser.add_argument("--version", action="version", version=f"vemkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def volume_args(p):
        p.add_argument("--voxel-size", type=_triple("voxel"), metavar="Z,Y,X",
                       help="voxel size in nm; overrides the file's")
        p.add_argument("--level", type=int, default=0, help="resolution level of a multiscale file")
        p.add_argument("--channel", type=int, default=None, help="channel to take from multichannel/RGB files")

    p = sub.add_parser("info", help="describe a volume file: shape, dtype, voxel size, chunks, size")
    p.add_argument("path", help="file, folder or glob (file.h5:/dataset for containers)")
    volume_args(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("fetch", help="download and verify a dataset of the manifest (--list to see them)")
    p.add_argument("name", nargs="?", help="dataset name")
    p.add_argument("--list", action="store_true", help="list the datasets")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_fetch)

    p = sub.add_parser("convert", help="convert a volume to multiscale OME-Zarr, block by block")
    p.add_argument("input")
    p.add_argument("output", help="target, e.g. volume.ome.zarr")
    volume_args(p)
    p.add_argument("--chunks", type=_triple("int"), metavar="Z,Y,X")
    p.add_argument("--levels", type=int, default=None, help="pyramid levels incl. full size")
    p.add_argument("--ome-version", choices=["0.4", "0.5"], default="0.4")
    p.add_argument("--memory", default="256MB", help="source data held at once (default 256MB)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("train", help="train a pixel classifier or fine-tune a U-Net on sparse annotations")
    p.add_argument("--method", default="rf", choices=["rf", "unet"],
                   help="rf: random forest on ilastik features; unet: fine-tune a U-Net (vemkit.train)")
    p.add_argument("--image", required=True)
    p.add_argument("--annotations", required=True,
                   help="annotation store (zarr from vemkit.annotate) or label image: 0 unlabelled, 1 background, 2.. classes")
    p.add_argument("--classes", help="class names for a label image, background first (default background,foreground)")
    p.add_argument("--out", required=True, help="model directory")
    p.add_argument("--voxel-size", type=_triple("voxel"), metavar="Z,Y,X")
    p.add_argument("--mode", choices=["2d", "3d"], help="features per section or in 3D (default: from the anisotropy)")
    p.add_argument("--trees", type=int, default=100, help="rf: number of trees")
    p.add_argument("--base", default="auto",
                   help="unet: shipped base model name, a model directory, auto (default) or none (from scratch)")
    p.add_argument("--minutes", type=float, help="unet: training time budget (default 10 unless --iterations)")
    p.add_argument("--iterations", type=int, help="unet: iteration budget")
    p.add_argument("--ndim", type=int, choices=[2, 3], help="unet: override the planner's 2D/3D choice")
    p.add_argument("--extra-targets", help="unet: boundary,distance output channels for splitting objects")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto")
    _add_amp(p)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("pretrain", help="pretrain a 2D base model on the manifest's labelled datasets")
    p.add_argument("--out", required=True, help="model directory to create")
    p.add_argument("--sources", default="isbi2012,flyem_medulla_fibsem,phantom",
                   help="comma-separated: isbi2012, flyem_medulla_fibsem, drosophila_vnc_sstem, phantom")
    p.add_argument("--vnc-sections", help="restrict drosophila_vnc_sstem to these sections (e.g. 0,10)")
    p.add_argument("--minutes", type=float, default=20.0)
    p.add_argument("--iterations", type=int)
    p.add_argument("--model-size", default="small", choices=["tiny", "small", "base"])
    p.add_argument("--patch", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--device", default="auto")
    _add_amp(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_pretrain)

    p = sub.add_parser("adapt", help="adapt a 2D U-Net to a new microscope without target labels")
    p.add_argument("--model", required=True, help="model directory trained on the source")
    p.add_argument("--source", required=True, help="the labelled image the model was trained on")
    p.add_argument("--source-annotations",
                   help="ynet/dann: annotation store or label image of the source (0 unlabelled, 1 background, 2.. classes)")
    p.add_argument("--classes", help="class names for a label image, background first (default background,foreground)")
    p.add_argument("--target", required=True, help="the new image (no labels)")
    p.add_argument("--method", default="ynet", choices=["ynet", "dann", "histogram", "adabn"],
                   help="ynet: reconstruction decoder; dann: gradient-reversal domain classifier; histogram: map the "
                        "target's grey values onto the source's; adabn: re-estimate BatchNorm statistics")
    p.add_argument("--out", required=True, help="model directory to write")
    p.add_argument("--minutes", type=float, help="ynet/dann: time budget (default 10 unless --iterations)")
    p.add_argument("--iterations", type=int, help="ynet/dann: iteration budget")
    p.add_argument("--source-voxel-size", type=_triple("voxel"), metavar="Z,Y,X")
    p.add_argument("--target-voxel-size", type=_triple("voxel"), metavar="Z,Y,X")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, mps or auto")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_adapt)

    p = sub.add_parser("export", help="export a U-Net model directory in the bioimage.io model format")
    p.add_argument("--model", required=True, help="model directory (vemkit train --method unet)")
    p.add_argument("--out", required=True, help="MODEL.zip (or a folder)")
    p.add_argument("--name", help="model name in the package")
    p.add_argument("--author", action="append", help="author name (repeatable)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("predict", help="predict a whole volume with a model directory")
    p.add_argument("--model", required=True)
    p.add_argument("--image", required=True)
    p.add_argument("--out", required=True, help="OUT.ome.zarr, or OUT.tif for labels")
    p.add_argument("--voxel-size", type=_triple("voxel"), metavar="Z,Y,X")
    p.add_argument("--probabilities", action="store_true",
                   help="write class probabilities (with the labels as its label group for networks)")
    p.add_argument("--block", type=_triple("int"), metavar="Z,Y,X", help="block per network call (default: planned)")
    p.add_argument("--halo", type=_triple("int0"), metavar="Z,Y,X", help="context per side (default: the model's)")
    p.add_argument("--batch-size", type=int, help="blocks per network call (default: planned)")
    p.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU), cpu, cuda, cuda:N, mps")
    p.add_argument("--tta", action="store_true", help="average over flips (test-time augmentation)")
    _add_amp(p)
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="dask scheduler address (tcp://host:8786): spread blocks over its workers")
    p.add_argument("--no-resume", action="store_true", help="refuse to finish an interrupted run")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("instances", help="instance labels from a mask or probabilities, block by block")
    p.add_argument("--labels", required=True, help="semantic mask, probabilities (with --channel) or binary mask")
    p.add_argument("--out", required=True, help="OUT.ome.zarr or IMAGE.ome.zarr:/labels/NAME")
    p.add_argument("--method", choices=["cc", "watershed"], default="cc")
    p.add_argument("--class-id", type=int, help="which class of a semantic mask (default: any nonzero)")
    p.add_argument("--threshold", type=float, help="foreground threshold for probabilities")
    p.add_argument("--min-size-nm3", type=float)
    p.add_argument("--min-distance-nm", type=float, default=100.0, help="watershed seed spacing")
    p.add_argument("--block", type=_triple("int"), metavar="Z,Y,X")
    p.add_argument("--voxel-size", type=_triple("voxel"), metavar="Z,Y,X")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_instances)

    p = sub.add_parser("measure", help="measure every object in physical units into a CSV/Parquet table")
    p.add_argument("--labels", required=True, help="instance labels")
    p.add_argument("--image", help="EM image for intensity statistics")
    p.add_argument("--out", required=True, help="table.csv or table.parquet")
    p.add_argument("--other", action="append", metavar="NAME=PATH",
                   help="another label volume: distance and contact area to it (repeatable)")
    p.add_argument("--skeleton", action="store_true", help="skeleton length and branch count")
    p.add_argument("--voxel-size", type=_triple("voxel"), metavar="Z,Y,X")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_measure)

    p = sub.add_parser("evaluate", help="score a prediction against ground truth into metrics.json")
    p.add_argument("--pred", required=True)
    p.add_argument("--truth", required=True)
    p.add_argument("--ignore", help="mask of voxels to ignore (nonzero = ignored)")
    p.add_argument("--kind", choices=["semantic", "instances"], default="semantic")
    p.add_argument("--out", required=True, help="metrics.json")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("tour", help="the main job: run notebooks 01-05 in order and write an HTML report")
    p.add_argument("--out", default="outputs/tour", help="folder for the report, executed notebooks and outputs")
    p.add_argument("--dataset", help="drosophila_vnc_sstem (default; the synthetic phantom when it cannot be had), "
                                     "another dataset with mitochondria labels, or synthetic")
    p.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU), cpu, cuda, cuda:N, mps")
    p.add_argument("--quick", action="store_true", help="the few-minutes version: small crop, few iterations")
    p.add_argument("--offline", action="store_true", help="never download: use the cache, else the phantom")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier tour in --out")
    p.add_argument("--notebooks", help="folder of the notebooks (default: the installed or checked-out ones)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_tour)
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
    except (FileNotFoundError, FileExistsError, KeyError, ValueError, IndexError, ConnectionError) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
