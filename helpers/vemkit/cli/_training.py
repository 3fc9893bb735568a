"""``vemkit train``, ``pretrain``, ``adapt`` and ``export``: make a model directory, or package one.

Not for: training itself (:mod:`vemkit.pixel_classifier`, :mod:`vemkit.train`, :mod:`vemkit.pretrain`,
:mod:`vemkit.adapt`, :mod:`vemkit.export`). ``adapt`` and ``export`` import torch when imported, so
they are imported by their commands only: ``vemkit --help`` stays fast.
"""

from __future__ import annotations

import json

from .._outputs import check_model_directory
from ..features import FeatureConfig
from ..io import open_volume
from ..neurons import train_affinities
from ..pixel_classifier import PixelClassifier
from ..pretrain import RECIPES, SOURCES, pretrain
from ..train import finetune, plan_training
from ._options import add_common, amp_value, load_annotations, voxel_arg

__all__ = ["COMMANDS"]

_CLASSES_HELP = "class names for a label image, background first (default background,foreground)"
_DEFAULT_MINUTES = 10.0  # the training budget when neither --minutes nor --iterations is given


def add_train(sub):
    p = sub.add_parser("train", help="train a pixel classifier or fine-tune a U-Net on sparse annotations")
    p.add_argument("--method", default="rf", choices=["rf", "unet"],
                   help="rf: random forest on ilastik features; unet: fine-tune a U-Net (vemkit.train)")
    p.add_argument("--image", required=True)
    p.add_argument("--annotations",
                   help="annotation store (zarr from vemkit.annotate) or label image: 0 unlabelled, 1 background, 2.. classes")
    p.add_argument("--target", default="classes", choices=["classes", "affinities"],
                   help="unet: classes (from --annotations) or affinities for neurons (from --labels; vemkit.neurons)")
    p.add_argument("--labels", help="--target affinities: dense instance labels (one id per neuron, 0 unlabelled)")
    p.add_argument("--classes", help=_CLASSES_HELP)
    p.add_argument("--out", required=True, help="model directory")
    p.add_argument("--voxel-size", type=voxel_arg, metavar="Z,Y,X")
    p.add_argument("--mode", choices=["2d", "3d"], help="features per section or in 3D (default: from the anisotropy)")
    p.add_argument("--trees", type=int, default=100, help="rf: number of trees")
    p.add_argument("--base", default="auto",
                   help="unet: shipped base model name, a model directory, auto (default) or none (from scratch)")
    p.add_argument("--minutes", type=float, help="unet: training time budget (default 10 unless --iterations)")
    p.add_argument("--iterations", type=int, help="unet: iteration budget")
    p.add_argument("--ndim", type=int, choices=[2, 3], help="unet: override the planner's 2D/3D choice")
    p.add_argument("--extra-targets", help="unet: boundary,distance output channels for splitting objects")
    p.add_argument("--seed", type=int, default=0)
    add_common(p, device=True, amp=True, overwrite=True, quiet=True)
    p.set_defaults(func=run_train)


def run_train(args):
    image = open_volume(args.image, voxel_size=args.voxel_size, warn_missing_voxel_size=False)
    if args.target == "affinities":
        return _train_affinities(args, image)
    if not args.annotations:
        raise ValueError("give --annotations (or --target affinities --labels INSTANCES)")
    annotations, classes = load_annotations(args.annotations, args.classes)
    if args.method == "unet":
        return _train_unet(args, image, annotations, classes)
    check_model_directory(args.out, [args.image, args.annotations], overwrite=args.overwrite)  # before training
    features = FeatureConfig(mode=args.mode) if args.mode else None
    clf = PixelClassifier(classes=classes, features=features, n_estimators=args.trees, seed=args.seed)
    clf.fit(image, annotations, device=args.device, progress=not args.quiet)
    out = clf.save(args.out, overwrite=args.overwrite)
    counts = ", ".join(f"{k}: {v}" for k, v in clf.training["annotated_voxels"].items())
    print(f"trained a random forest on {counts} annotated voxels ({clf.training['n_features']} features); saved {out}")
    return 0


def _train_unet(args, image, annotations, classes):
    minutes = _DEFAULT_MINUTES if args.minutes is None and args.iterations is None else args.minutes
    base = None if args.base in (None, "none") else args.base
    overrides = {"ndim": args.ndim} if args.ndim else {}
    plan = plan_training(image, annotations, device=args.device, base=base, **overrides)
    if not args.quiet:
        print(plan)
    extra = tuple(args.extra_targets.split(",")) if args.extra_targets else ()
    model = finetune(image, annotations, classes=classes, base=base, out=args.out, plan=plan, minutes=minutes,
                     iterations=args.iterations, device=args.device, seed=args.seed, overwrite=args.overwrite,
                     amp=amp_value(args.amp), extra_targets=extra, progress=not args.quiet)
    rec = model.training
    val = f", validation IoU {rec['final_val_iou']:.3f}" if rec.get("final_val_iou") is not None else ""
    print(f"trained a {plan.ndim}D U-Net ({'from ' + str(base) if base else 'from scratch'}) for {rec['iterations']} "
          f"iterations in {rec['seconds'] / 60:.1f} min on {rec['device']}{val}; saved {args.out}")
    return 0


def _train_affinities(args, image):
    if args.method != "unet" or not args.labels:
        raise ValueError("--target affinities trains a U-Net from instance labels: pass --method unet --labels INSTANCES")
    labels = open_volume(args.labels, warn_missing_voxel_size=False)
    minutes = _DEFAULT_MINUTES if args.minutes is None and args.iterations is None else args.minutes
    model = train_affinities(image, labels, out=args.out, minutes=minutes, iterations=args.iterations,
                             device=args.device, seed=args.seed, amp=amp_value(args.amp), overwrite=args.overwrite,
                             progress=not args.quiet)
    rec = model.training
    print(f"trained a 3D affinity U-Net ({len(model.target['offsets'])} offsets) for {rec['iterations']} iterations "
          f"in {rec['seconds'] / 60:.1f} min on {rec['device']}; saved {args.out}")
    return 0


def add_pretrain(sub):
    p = sub.add_parser("pretrain", help="pretrain a 2D base model on the manifest's labelled datasets")
    p.add_argument("--out", required=True, help="model directory to create")
    p.add_argument("--recipe", choices=sorted(RECIPES),
                   help="a named pretraining (mito2d: the shipped em2d-mito); the options below override it")
    p.add_argument("--sources", help="comma-separated, from: " + ", ".join(SOURCES) +
                   " (default isbi2012,flyem_medulla_fibsem,phantom, or the recipe's)")
    p.add_argument("--leave-out", help="comma-separated sources to drop from the recipe's (leave-one-out)")
    p.add_argument("--vnc-sections", help="restrict drosophila_vnc_sstem to these sections (e.g. 0,10)")
    p.add_argument("--minutes", type=float, help="wall-time budget (default 20, or the recipe's)")
    p.add_argument("--iterations", type=int)
    p.add_argument("--model-size", choices=["tiny", "small", "base"])
    p.add_argument("--patch", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--augment", choices=["default", "pretraining"],
                   help="augmentation strength (pretraining: pixel size 0.6-1.6x, wide contrast/gamma, blur, noise)")
    p.add_argument("--init", help="continue from this base model (shipped name or model directory; 'none': random)")
    p.add_argument("--lr", type=float, help="learning rate (default 1e-3, or the recipe's)")
    p.add_argument("--seed", type=int, default=0)
    add_common(p, device=True, amp=True, quiet=True)
    p.set_defaults(func=run_pretrain)


def pretrain_arguments(args) -> dict:
    """Keyword arguments of :func:`vemkit.pretrain.pretrain` from the recipe, the options over it."""
    kw = {"sources": ("isbi2012", "flyem_medulla_fibsem", "phantom"), "minutes": 20.0, "model_size": "small",
          "patch": 256, "batch_size": 4, "augment": "default"}
    if args.recipe:
        kw.update(RECIPES[args.recipe])
        kw["recipe"] = args.recipe
    if args.sources:
        kw["sources"] = tuple(args.sources.split(","))
    if args.leave_out:
        drop = set(args.leave_out.split(","))
        kw["sources"] = tuple(s for s in kw["sources"] if s not in drop)
        kw["description"] = f"{kw.get('description', 'base model')} (without {', '.join(sorted(drop))})"
    if args.vnc_sections:
        kw["vnc_sections"] = tuple(int(v) for v in args.vnc_sections.split(","))
    for name in ("minutes", "iterations", "model_size", "patch", "batch_size", "augment", "init", "lr"):
        if getattr(args, name) is not None:
            kw[name] = getattr(args, name)
    if kw.get("init") == "none":
        kw["init"] = None
    return kw


def run_pretrain(args):
    kw = pretrain_arguments(args)
    model = pretrain(args.out, device=args.device, seed=args.seed, amp=amp_value(args.amp), progress=not args.quiet,
                     **kw)
    print(f"pretrained {model.training['iterations']} iterations in {model.training['seconds'] / 60:.1f} min; "
          f"saved {args.out} (see its MODEL_CARD.md)")
    return 0


def add_adapt(sub):
    p = sub.add_parser("adapt", help="adapt a 2D U-Net to a new microscope without target labels")
    p.add_argument("--model", required=True, help="model directory trained on the source")
    p.add_argument("--source", required=True, help="the labelled image the model was trained on")
    p.add_argument("--source-annotations",
                   help="ynet/dann: annotation store or label image of the source (0 unlabelled, 1 background, 2.. classes)")
    p.add_argument("--classes", help=_CLASSES_HELP)
    p.add_argument("--target", required=True, help="the new image (no labels)")
    p.add_argument("--method", default="ynet", choices=["ynet", "dann", "histogram", "adabn"],
                   help="ynet: reconstruction decoder; dann: gradient-reversal domain classifier; histogram: map the "
                        "target's grey values onto the source's; adabn: re-estimate BatchNorm statistics")
    p.add_argument("--out", required=True, help="model directory to write")
    p.add_argument("--minutes", type=float, help="ynet/dann: time budget (default 10 unless --iterations)")
    p.add_argument("--iterations", type=int, help="ynet/dann: iteration budget")
    p.add_argument("--source-voxel-size", type=voxel_arg, metavar="Z,Y,X")
    p.add_argument("--target-voxel-size", type=voxel_arg, metavar="Z,Y,X")
    p.add_argument("--seed", type=int, default=0)
    add_common(p, device=True, overwrite=True, quiet=True)
    p.set_defaults(func=run_adapt)


def run_adapt(args):
    from ..adapt import adapt  # imports torch

    source = open_volume(args.source, voxel_size=args.source_voxel_size, warn_missing_voxel_size=False)
    target = open_volume(args.target, voxel_size=args.target_voxel_size, warn_missing_voxel_size=False)
    annotations = None
    if args.method in ("ynet", "dann"):
        if not args.source_annotations:
            raise ValueError(f"--method {args.method} trains on the labelled source: pass --source-annotations")
        annotations, _ = load_annotations(args.source_annotations, args.classes)
    minutes = _DEFAULT_MINUTES if args.minutes is None and args.iterations is None else args.minutes
    model = adapt(args.model, source, annotations, target, method=args.method, out=args.out, minutes=minutes,
                  iterations=args.iterations, device=args.device, seed=args.seed, overwrite=args.overwrite,
                  progress=not args.quiet)
    rec = model.training["adaptation"]
    done = f"{rec['iterations']} iterations in {rec['seconds'] / 60:.1f} min" if rec.get("iterations") else "no training"
    print(f"adapted with {args.method} ({done}); saved {args.out}")
    if model.voxel_size and target.voxel_size:
        zoom = min(target.voxel_size[1:]) / min(model.voxel_size[1:])
        if abs(zoom - 1) > 0.2:
            print(f"note: the target's pixels are {zoom:.2f}x the model's; predict on the target resampled to "
                  f"{min(model.voxel_size[1:]):g} nm (vemkit.domain.resample_sections), as it was adapted")
    return 0


def add_export(sub):
    p = sub.add_parser("export", help="export a U-Net model directory in the bioimage.io model format")
    p.add_argument("--model", required=True, help="model directory (vemkit train --method unet)")
    p.add_argument("--out", required=True, help="MODEL.zip (or a folder)")
    p.add_argument("--name", help="model name in the package")
    p.add_argument("--author", action="append", help="author name (repeatable)")
    add_common(p, overwrite=True)
    p.set_defaults(func=run_export)


def run_export(args):
    from ..export import export_bioimageio, validate_bioimageio  # imports torch

    out = export_bioimageio(args.model, args.out, name=args.name, authors=args.author or None,
                            overwrite=args.overwrite)
    summary = validate_bioimageio(out)
    print(json.dumps(summary, indent=1))
    print(f"wrote the bioimage.io model package {out} ({summary['status']})")
    return 0


#: The commands of this module, in the order ``vemkit --help`` lists them.
COMMANDS = (add_train, add_pretrain, add_adapt, add_export)
