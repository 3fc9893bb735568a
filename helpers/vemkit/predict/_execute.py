"""Running the blocks: in this process (reads and writes overlapped with compute) or on a dask cluster.

Both take the groups of block indices still to do, run them with a :class:`~._runner.Runner`, record
each group in the run log once written and advance the progress bar; they return the output voxels
computed. Not for: what happens to one block (:mod:`._runner`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict

import numpy as np

from .._device import resolve_device
from .._precision import resolve_amp
from ._runner import Runner, Settings, release_freed_memory

__all__ = ["run_local", "run_distributed"]


class _Progress:
    """Counts the output voxels of finished groups, on the progress bar too."""

    def __init__(self, bar, block_voxels):
        self.bar, self.block_voxels = bar, block_voxels
        self.computed = 0

    def count(self, group):
        n = sum(self.block_voxels[i] for i in group)
        self.computed += n
        self.bar.update(n)


def run_local(net, settings, data, starts, groups, log, bar, block_voxels, prefetch):
    """One process: reader threads fill batches ahead, the network runs in this thread, writer
    threads store results and then record the blocks as done."""
    import torch

    runner = Runner(net, settings, data)
    progress = _Progress(bar, block_voxels)
    n_threads = max(2, min(8, (os.cpu_count() or 2)))
    pending_writes = deque()
    with ThreadPoolExecutor(n_threads, thread_name_prefix="vemkit-read") as readers, \
            ThreadPoolExecutor(2, thread_name_prefix="vemkit-write") as writers:
        queue = deque()
        group_iter = iter(groups)

        def submit_next():
            g = next(group_iter, None)
            if g is not None:
                queue.append((g, [readers.submit(runner.read, starts[i]) for i in g]))

        for _ in range(max(1, prefetch)):
            submit_next()
        while queue:
            group, futures = queue.popleft()
            submit_next()
            parts = [f.result() for f in futures]
            del futures
            batch = parts[0][None] if len(parts) == 1 else np.stack(parts)  # no copy for a batch of one
            del parts
            probs, labs = runner.infer(batch)
            del batch
            release_freed_memory()

            def write(group=group, probs=probs, labs=labs):
                for k, i in enumerate(group):
                    runner.write(starts[i], None if probs is None else probs[k], None if labs is None else labs[k])
                log.add(group)
                return group

            pending_writes.append(writers.submit(write))
            while len(pending_writes) > 2 or (pending_writes and pending_writes[0].done()):
                progress.count(pending_writes.popleft().result())
        while pending_writes:
            progress.count(pending_writes.popleft().result())
    if runner.device.type == "cuda":
        torch.cuda.synchronize(runner.device)
    return progress.computed


# ------------------------------------------------------------------------------------- distributed
_WORKER_RUNNERS: dict = {}


def _worker_device(requested: str) -> str:
    """On a dask worker: ``auto`` takes one GPU per worker (by worker name where several are visible)."""
    import torch

    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        if n == 1:
            return "cuda"
        try:
            from distributed import get_worker

            name = get_worker().name
            index = int(name) if str(name).isdigit() else int(hashlib.md5(str(name).encode()).hexdigest(), 16)
        except Exception:  # not on a worker
            index = 0
        return f"cuda:{index % n}"
    return "cpu"


def _worker_run_group(indices, starts, token, net, settings_dict, source):
    """A dask task: run one group of blocks on this worker, reusing its network between tasks."""
    import torch

    runner = _WORKER_RUNNERS.get(token)
    if runner is None:
        s = Settings(**settings_dict)
        s.device = _worker_device(s.device)
        if s.amp == "auto":
            s.amp = resolve_amp("auto", resolve_device(s.device))
        if s.threads:
            torch.set_num_threads(int(s.threads))
        runner = Runner(net, s, source)
        _WORKER_RUNNERS.clear()
        _WORKER_RUNNERS[token] = runner
    runner.run_group(starts)
    if runner.device.type == "cpu":
        release_freed_memory()
    return indices


def run_distributed(client, net, settings, data, starts, groups, log, bar, block_voxels):
    """The groups as tasks on ``client``'s workers (the network and the source scattered once)."""
    from distributed import as_completed

    token = hashlib.sha256(json.dumps(asdict(settings), sort_keys=True, default=str).encode()
                           + net.fingerprint.encode()).hexdigest()
    cpu_net = copy.copy(net)
    cpu_net.module = copy.deepcopy(net.module).cpu()
    [net_future] = client.scatter([cpu_net], broadcast=True)
    [source_future] = client.scatter([data], broadcast=True)
    nthreads = client.nthreads()
    settings_dict = asdict(settings)
    if nthreads:
        settings_dict["threads"] = max(1, min(nthreads.values()))
    futures = [
        client.submit(_worker_run_group, g, [starts[i] for i in g], token, net_future, settings_dict,
                      source_future, pure=False, key=f"vemkit-predict-{token[:12]}-{g[0]}")
        for g in groups
    ]
    progress = _Progress(bar, block_voxels)
    for fut in as_completed(futures):
        group = fut.result()
        log.add(group)
        progress.count(group)
    return progress.computed
