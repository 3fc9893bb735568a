"""vemkit: from a raw volume-EM stack to measured organelles.

The package is organised by pipeline stage, one small module per concern:

- :mod:`vemkit.io` opens any volume file lazily with its voxel size and writes OME-Zarr.
- :mod:`vemkit.datasets` fetches the public datasets of ``data_manifest.json`` with verified bytes.
- :mod:`vemkit.synthetic` makes an EM-like phantom with exact ground truth.
- :mod:`vemkit.viz` shows volumes as orthogonal slices, interactively or as static figures.
- :mod:`vemkit.segment_classic` holds the classic heuristics (thresholds, watershed) used as baselines.
- :mod:`vemkit.annotate` keeps sparse annotations on disk and paints them in a notebook widget.
- :mod:`vemkit.features` computes ilastik-style pixel features, on CPU or GPU.
- :mod:`vemkit.pixel_classifier` trains a random forest on annotated voxels and predicts blockwise.
- :mod:`vemkit.models` holds the U-Nets and the model directory; :mod:`vemkit.augment` the training
  augmentations; :mod:`vemkit.predict` runs a network over a volume block by block (GPU or CPU,
  resumable, on a dask cluster); :mod:`vemkit.export` writes bioimage.io model packages.
- :mod:`vemkit.domain` measures the gap between two datasets and holds the cheap remedies
  (resampling, histogram matching, AdaBN); :mod:`vemkit.adapt` adapts a model to a new microscope
  without target labels (Y-Net, DANN).
- :mod:`vemkit.instances` turns masks and probabilities into instance labels, blockwise.
- :mod:`vemkit.neurons` segments densely packed neurites: affinity targets, an affinity U-Net, and
  mutex watershed / mean-affinity agglomeration, blockwise.
- :mod:`vemkit.measure` measures every object in physical units.
- :mod:`vemkit.metrics` scores segmentations against ground truth; :mod:`vemkit.quality` checks them
  without it.
- :mod:`vemkit.tour` runs notebooks 01 to 05 in order, each on the previous one's outputs, and writes
  an HTML report (``vemkit tour``, the main job); :mod:`vemkit.colab` sets up a Colab runtime for
  the notebooks.
- :mod:`vemkit.examples` gives the notebooks and the tour their example data: a dataset, a phantom or
  the user's own image, cropped, with its ground truth.
- :mod:`vemkit.cli` is the ``vemkit`` command line.

Importing :mod:`vemkit` is cheap: submodules are imported on first use.
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = (
    "adapt",
    "annotate",
    "augment",
    "cli",
    "colab",
    "datasets",
    "domain",
    "examples",
    "export",
    "features",
    "generalist",
    "instances",
    "io",
    "measure",
    "metrics",
    "models",
    "neurons",
    "pixel_classifier",
    "predict",
    "quality",
    "segment_classic",
    "synthetic",
    "tour",
    "viz",
)

__all__ = ["__version__", *_SUBMODULES]


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"vemkit.{name}")
    raise AttributeError(f"module 'vemkit' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
