"""Blockwise inference of a network over a volume of any size, on GPU or CPU, resumable, optionally
spread over a dask cluster.

- :func:`estimate` plans a run before it starts: the block and batch that fit the device, and (by
  timing a probe) how long the volume will take. The :class:`InferencePlan` it returns prints as a
  summary and runs as it is: ``predict_volume(model, image, output, plan=plan)``.
- :func:`predict_volume` streams a volume through a network block by block (each block read with a
  halo of context, the halo cropped from the result), with batching, mixed precision, optional flip
  test-time augmentation, reads and writes overlapped with compute, and writes class probabilities
  and/or argmax labels to OME-Zarr. Memory depends on the block, never on the volume. A vemkit U-Net
  runs BatchNorm-folded and channels-last, and its decoder only inside the block (the halo is context
  for the encoder; the decoder's output there would be thrown away).
- Resume: every finished block is recorded next to the output (:data:`LOG_FILE`, beside the run record
  :data:`RUN_FILE`); a run that is killed and started again computes only the missing blocks, with the
  same result.
- ``model="sam-auto[:<SAM model>]"`` (automatic SAM) and ``"cellpose[:<model>]"`` (Cellpose-SAM,
  optional package): section by section, objects linked across sections into instance labels
  (:mod:`._samauto`; resumable the same way).
- Rescale: ``rescale=0.5`` runs the network on the image at half its size in y/x and resizes the
  result back (objects larger in pixels than in the model's training data); ``rescale="auto"`` picks
  the factor from a sample (:mod:`._rescale`).
- Distributed: pass a ``dask.distributed`` client and the blocks are spread over its workers (one
  GPU each where there are GPUs); scheduling is dask's.

Seams: a block's result equals whole-volume inference when the halo covers the network's receptive
field (:meth:`vemkit.models.UNet.receptive_field`) and blocks and halos are multiples of the
network's pooling divisor (tested); smaller halos trade exactness near block faces for speed.
Not for: training (:mod:`vemkit.train`), random-forest models (:mod:`vemkit.pixel_classifier`).
"""

from ._planning import InferencePlan
from ._predict import PredictionResult, estimate, predict_volume
from ._rescale import AUTO_FACTORS, check_rescale
from ._samauto import is_sam_auto, is_section_model
from ._store import LOG_FILE, RUN_FILE  # noqa: F401  (the files beside an output; public, not in __all__)

__all__ = ["AUTO_FACTORS", "InferencePlan", "PredictionResult", "check_rescale", "estimate", "is_sam_auto",
           "is_section_model", "predict_volume"]
