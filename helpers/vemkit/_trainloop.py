"""The one training loop of vemkit: fine-tuning, pretraining and domain adaptation all run it.

:class:`TrainLoop` owns what every training run shares: the AdamW optimiser with its polynomial
learning-rate decay, the budget (minutes and/or iterations, at least one step), the numerical precision
(:func:`vemkit._precision.training_precision`: autocast dtype, memory format, fp16 loss scaler), the
optimiser step, the progress bar, the loss history, and hooks for validation, a live plot and
checkpoints. A training method subclasses it and overrides :meth:`TrainLoop.forward_and_loss` (sample a
batch, run the networks, return the loss); it never copies the loop.

Not for: what to train on or with which loss (:mod:`vemkit.train`, :mod:`vemkit.pretrain`,
:mod:`vemkit.adapt`).
"""

from __future__ import annotations

import math
import time

from ._checks import check_positive, check_positive_int
from ._precision import training_precision
from ._progress import progress_bar

__all__ = ["TrainLoop", "NonFiniteLossError", "check_budget", "optimizer_step", "run_environment"]


class NonFiniteLossError(FloatingPointError, ValueError):
    """The training loss became NaN or infinite: training stops before the step that would spread it
    into the weights (and nothing is saved as if it were a trained model)."""


def check_budget(minutes, iterations):
    """``(minutes, iterations)`` checked: at least one given, minutes a finite number > 0, iterations an
    integer >= 1 (a NaN budget would never end a run).

    Examples
    --------
    >>> check_budget(1, None)
    (1.0, None)
    >>> check_budget(float("nan"), None)
    Traceback (most recent call last):
    ...
    ValueError: minutes must be a finite number > 0, got nan
    """
    if minutes is None and iterations is None:
        raise ValueError("give a budget: minutes=... and/or iterations=...")
    minutes = None if minutes is None else check_positive(minutes, "minutes")
    iterations = None if iterations is None else check_positive_int(iterations, "iterations")
    return minutes, iterations


def check_loss(loss, step: int) -> None:
    """Raise :class:`NonFiniteLossError` when ``loss`` (a tensor) is NaN or infinite at iteration ``step``."""
    value = float(loss.detach())
    if not math.isfinite(value):
        raise NonFiniteLossError(
            f"the training loss became {value} at iteration {step}: training stopped and nothing was saved from "
            "it. Usual causes: NaN or infinite values in the image, a learning rate too high, or fp16 overflow "
            "(try amp='bf16' or amp=False)"
        )


def optimizer_step(loss, opt, scaler=None):
    """Backward pass and optimiser step, through the fp16 loss scaler when there is one."""
    opt.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    else:
        loss.backward()
        opt.step()


def run_environment(device, seed) -> dict:
    """Where and how a training ran, for its record: device (with the GPU's name), machine, torch, seed."""
    import platform

    import torch

    name = f"cuda ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else str(device)
    return {"device": name, "machine": platform.processor() or platform.machine(), "torch": torch.__version__,
            "seed": seed}


class TrainLoop:
    """Train ``modules`` (moved to ``device`` in the training memory format) with AdamW.

    Subclasses override :meth:`forward_and_loss`; :meth:`run` calls it once per step.

    Parameters
    ----------
    modules : sequence of torch.nn.Module
        Trained together; one AdamW parameter group over their parameters, in order.
    device : torch.device
    amp : "auto", "bf16", "fp16" or False
        See :func:`vemkit._precision.resolve_amp`.
    ndim : int
        2 or 3: the networks' dimensionality (channels-last on the CPU follows it).
    lr, weight_decay : float
        AdamW's; the learning rate decays as ``lr * (1 - progress) ** 0.9``.
    desc : str
        The progress bar's label.
    progress : bool
        Show the progress bar.

    Examples
    --------
    >>> import torch
    >>> class Fit(TrainLoop):
    ...     history_keys = ("loss",)
    ...     def forward_and_loss(self, fraction):
    ...         loss = (self.modules[0](torch.ones(1, 1)) - 1.0).pow(2).mean()
    ...         return loss, {"loss": loss}
    >>> _ = torch.manual_seed(0)
    >>> loop = Fit([torch.nn.Linear(1, 1)], device=torch.device("cpu"), amp=False, ndim=2, lr=0.1, progress=False)
    >>> history = loop.new_history()
    >>> loop.run(history, iterations=5)
    5
    >>> len(history["loss"]), history["loss"][-1] < history["loss"][0]
    (5, True)
    """

    #: History lists besides ``iteration`` and ``seconds``: one per value :meth:`forward_and_loss` logs.
    history_keys: tuple = ("loss",)
    #: Short names of logged values in the progress bar (default: the key itself).
    postfix_names: dict = {}

    def __init__(self, modules, *, device, amp, ndim: int, lr: float, weight_decay: float = 1e-4,
                 desc: str = "training", progress: bool = True):
        import torch

        self.device = device
        self.amp, self.dtype, self.memory_format, self.scaler = training_precision(amp, device, ndim)
        self.modules = [m.to(device, memory_format=self.memory_format) for m in modules]
        params = [p for m in self.modules for p in m.parameters()]
        self.opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
        self.lr = lr
        self.desc, self.progress = desc, progress
        self.step = 0
        self.t0 = time.perf_counter()

    # ------------------------------------------------------------------------------- for subclasses
    def forward_and_loss(self, fraction: float):
        """One batch: ``(loss, logs)``; ``logs`` maps :attr:`history_keys` to tensors or floats (a str
        value is shown in the progress bar only). ``fraction`` is the share of the budget spent."""
        raise NotImplementedError

    def autocast(self):
        """The autocast context of this run's precision (a no-op in float32)."""
        import torch

        return torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None)

    def to_device(self, x):
        """A batch on the device, in the training memory format."""
        return x.to(self.device).contiguous(memory_format=self.memory_format)

    def new_history(self) -> dict:
        return {"iteration": [], "seconds": [], **{k: [] for k in self.history_keys}}

    def train_mode(self):
        for m in self.modules:
            m.train()

    def finish(self):
        """Evaluation mode on the CPU in the standard memory layout (what a model directory stores)."""
        import torch

        for m in self.modules:
            m.eval().cpu().to(memory_format=torch.contiguous_format)

    # ----------------------------------------------------------------------------------------- loop
    def run(self, history, *, minutes=None, iterations=None, elapsed: float = 0.0, validate=None,
            eval_every: int | None = None, monitor=None, checkpoint=None, checkpoint_every: float = math.inf):
        """Train until the budget is spent (always at least one step); returns the step count.

        Parameters
        ----------
        history : dict
            :meth:`new_history` (or a resumed one, with :attr:`step` set): appended to in place.
        minutes, iterations : budget
            Wall time (including ``elapsed``) and/or steps in all.
        elapsed : float
            Seconds already trained (a resumed run).
        validate : callable, optional
            ``validate() -> float`` every ``eval_every`` steps and after the last one, recorded as
            ``val_iteration`` / ``val_iou``.
        monitor : object with ``update(history)``, optional
            A live plot: updated after each validation (or every 5 steps without) and at the end.
        checkpoint : callable, optional
            ``checkpoint(step, seconds, history)`` at most every ``checkpoint_every`` seconds.
        """

        if minutes is not None or iterations is not None:
            minutes, iterations = check_budget(minutes, iterations)
        if validate is not None:
            eval_every = check_positive_int(eval_every, "eval_every")
        budget = minutes * 60 if minutes is not None else math.inf
        self.t0 = t0 = time.perf_counter() - elapsed
        last_ckpt = time.perf_counter()
        bar = progress_bar(total=iterations, initial=self.step, disable=not self.progress, desc=self.desc, unit="it")
        self.train_mode()
        first = True
        while True:
            spent = time.perf_counter() - t0
            if (iterations is not None and self.step >= iterations) or (spent >= budget and not first):
                break
            first = False
            fraction = min(1.0, max(self.step / iterations if iterations else 0.0,
                                    spent / budget if budget < math.inf else 0.0))
            for g in self.opt.param_groups:
                g["lr"] = self.lr * (1 - fraction) ** 0.9
            loss, logs = self.forward_and_loss(fraction)
            check_loss(loss, self.step + 1)  # before the step: NaN must not reach the weights
            optimizer_step(loss, self.opt, self.scaler)
            self.step += 1
            self._record(history, logs, time.perf_counter() - t0, bar)
            if validate is not None and self.step % eval_every == 0:
                self.validate_into(history, validate)
                self.train_mode()
                if monitor:
                    monitor.update(history)
            elif monitor and self.step % 5 == 0:
                monitor.update(history)
            if checkpoint is not None and time.perf_counter() - last_ckpt > checkpoint_every:
                checkpoint(self.step, time.perf_counter() - t0, history)
                last_ckpt = time.perf_counter()
        bar.close()
        if validate is not None and (not history["val_iteration"] or history["val_iteration"][-1] != self.step):
            self.validate_into(history, validate)
        if monitor:
            monitor.update(history)
        return self.step

    def seconds(self) -> float:
        """Wall time trained so far (a resumed run's earlier seconds included)."""
        return time.perf_counter() - self.t0

    def validate_into(self, history, validate):
        history["val_iteration"].append(self.step)
        history["val_iou"].append(validate())

    def _record(self, history, logs, seconds, bar):
        history["iteration"].append(self.step)
        history["seconds"].append(round(seconds, 3))
        postfix = {}
        for key, value in logs.items():
            name = self.postfix_names.get(key, key)
            if isinstance(value, str):
                postfix[name] = value
                continue
            history[key].append(float(value.detach() if hasattr(value, "detach") else value))
            postfix[name] = f"{history[key][-1]:.3f}"
        bar.update(1)
        bar.set_postfix(**postfix)
