"""Files that vemkit loads never run code: a planted pickle in a training checkpoint is refused (and
not executed), and every ``torch.load`` in the package loads weights only."""

import os
import re

import numpy as np
import pytest
import torch

from conftest import ROOT
from vemkit._volume import Volume
from vemkit.synthetic import make_phantom
from vemkit.train import finetune, plan_training


class _Payload:
    """Unpickling this creates a folder: proof that the pickle ran code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_every_torch_load_in_the_package_is_weights_only():
    calls = []
    for path in (ROOT / "helpers" / "vemkit").rglob("*.py"):
        for m in re.finditer(r"torch\.load\(([^)]*)\)", path.read_text()):
            calls.append((path.name, m.group(1)))
    assert calls, "expected torch.load calls in the package"
    unsafe = [c for c in calls if "weights_only=True" not in c[1]]
    assert not unsafe, unsafe


def test_planted_checkpoint_pickle_is_not_executed(tmp_path):
    ph = make_phantom((8, 128, 128), voxel_size=(40.0, 8.0, 8.0), seed=3)
    ann = np.zeros(ph.semantic.shape, np.uint8)
    for z in (1, 4, 6):
        ann[z] = 1 + (np.asarray(ph.semantic[z]) == 2)
    image = Volume.from_array(np.asarray(ph.image), voxel_size=(40.0, 8.0, 8.0))
    plan = plan_training(image, ann, device="cpu", model_size="tiny", patch=(1, 64, 64), batch_size=2)
    out = tmp_path / "model"
    out.mkdir()
    sentinel = tmp_path / "code-ran"
    torch.save({"network": _Payload(sentinel), "step": 1}, out / "checkpoint.pt")
    with pytest.raises(ValueError, match=r"checkpoint\.pt is not a training checkpoint.*nothing in it was run"):
        finetune(image, ann, classes=["background", "mito"], base=None, device="cpu", progress=False, plan=plan,
                 iterations=2, out=out)
    assert not sentinel.exists()
    assert (out / "checkpoint.pt").exists()  # refused, not deleted: the user decides
