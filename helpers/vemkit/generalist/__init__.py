"""Generalist models: Segment Anything (and micro-sam's EM organelle models), MitoNet, bioimage.io.

The models are entries of ``data_manifest.json``'s ``"models"`` section (URL, hashes, licence,
citation, input expectations), fetched on first use into ``VEMKIT_DATA_DIR`` and verified
(:func:`fetch_model`); code-carrying files (TorchScript) load only with a pinned SHA-256.

- :func:`load_sam` -> :class:`PromptSegmenter`: embed a section once, then masks from point and box
  prompts (the Annotator's prompt mode, :mod:`vemkit._prompt`).
- :class:`AutoMaskGenerator`: every object of a section from a grid of point prompts (automatic
  SAM; ``predict_volume(model="sam-auto")`` runs it over a volume and links objects across sections).
- :func:`load_cellpose` -> :class:`CellposeSegmenter`: Cellpose-SAM through the optional ``cellpose``
  package on verified weights (``predict_volume(model="cellpose")``).
- :func:`load_mitonet` -> :class:`MitoNet` with :func:`segment_section` (panoptic instances per section).
- :func:`load_bioimageio`: a bioimage.io model's TorchScript weights and processing.
- :func:`write_tiny_model`: a random model of the published format and a manifest entry for it
  (tests, offline demos; weights do not matter there); :func:`write_tiny_bioimageio` a package.
- :func:`simulate_clicks`: click-to-segment measured against ground truth (clicks, seconds, IoU per object).
- :class:`PromptAnnotator`: the Annotator with SAM prompts (click, box, accept, propagate).

Zero-shot volumes run through :func:`vemkit.predict.predict_volume` with ``model="mitonet_mini_v1"``
(any MitoNet name) or ``"bioimageio:<id or folder>"``. Not for: training them.
"""

from ._automask import AutoMaskGenerator, AutoMaskSettings
from ._bioimageio import BioimageioNetwork, load_bioimageio
from ._cellpose import CellposeSegmenter, OptionalDependencyError, load_cellpose
from ._clicks import click_summary, simulate_clicks
from ._mitonet import MitoNet, load_mitonet, orthoplane_consensus, panoptic_instances, segment_section
from ._registry import (GENERALIST_ALIASES, UnpinnedCodeError, fetch_model, file_sha256, is_cached, is_generalist,
                        list_models, model_entry, model_file, pin_model, pinned_sha256)
from ._sam import Embedding, PromptSegmenter, load_sam, sam_config, to_rgb8
from ._tiny import write_tiny_bioimageio, write_tiny_model

__all__ = [
    "GENERALIST_ALIASES", "is_generalist", "AutoMaskGenerator", "AutoMaskSettings", "CellposeSegmenter", "OptionalDependencyError", "load_cellpose", "BioimageioNetwork", "Embedding", "MitoNet", "PromptSegmenter", "UnpinnedCodeError", "fetch_model",
    "file_sha256", "is_cached", "list_models", "load_bioimageio", "load_mitonet", "load_sam", "model_entry",
    "model_file", "orthoplane_consensus", "panoptic_instances", "pin_model", "pinned_sha256", "sam_config", "segment_section",
    "to_rgb8", "write_tiny_model", "write_tiny_bioimageio", "simulate_clicks", "click_summary", "PromptAnnotator",
]


def __getattr__(name):
    if name == "PromptAnnotator":  # the widget pulls in anywidget: imported when used
        from .._prompt import PromptAnnotator

        return PromptAnnotator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
