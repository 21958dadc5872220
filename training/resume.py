"""Exact resumption of a training run: checkpoint checks, RNG states and the CSV log.

A training checkpoint (``OUT/last.pt``) holds, next to the weights, everything the next step
depends on: optimiser and LR-scheduler state, the step and training time, the RNG states of
torch (CPU and CUDA), numpy and Python, and the data pipeline's position (``data``: sample
index, dataset seed and epoch, the DataLoader generator's state). Restoring all of it gives a
resumed run the loss curve of an uninterrupted one.
"""
from __future__ import annotations

import csv
import logging
import os
import random
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

from hndesc_ros.errors import WeightsError, describe
from hndesc_ros.models.checkpoint import read_checkpoint

LOG = logging.getLogger(__name__)

# What a checkpoint needs to be resumed from (release weights have none of the training state).
REQUIRED = ('state_dict', 'optimizer', 'scheduler', 'step', 'torch_rng', 'numpy_rng',
            'python_rng')


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from; the message is one line naming the file."""


def rng_state() -> Dict:
    """The global RNG states, under the keys a training checkpoint stores them."""
    state = {'torch_rng': torch.get_rng_state(), 'numpy_rng': np.random.get_state(),
             'python_rng': random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda_rng'] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(blob: Dict) -> None:
    """Set the global RNGs from a checkpoint written with :func:`rng_state`."""
    torch.set_rng_state(blob['torch_rng'])
    np.random.set_state(blob['numpy_rng'])
    random.setstate(blob['python_rng'])
    cuda = blob.get('cuda_rng')
    if cuda is not None and torch.cuda.is_available():
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        else:
            LOG.warning('checkpoint has CUDA RNG states for %d GPUs, this machine has %d: '
                        'CUDA random numbers will differ', len(cuda), torch.cuda.device_count())


def read_training_checkpoint(path: Path) -> Dict:
    """Load ``path`` and check that it is a training checkpoint.

    Args:
        path: the checkpoint file (``OUT/last.pt``).

    Returns:
        The saved dict (tensors on the CPU).

    Raises:
        CheckpointError: missing, unreadable (truncated, garbage), not a hndesc_ros checkpoint
            or release weights without training state; one line naming the file.
    """
    try:
        blob = read_checkpoint(path)  # missing, unreadable, not hndesc_ros: one line each
    except WeightsError as exc:
        raise CheckpointError(str(exc)) from None
    missing = [k for k in REQUIRED if k not in blob]
    if missing:
        raise CheckpointError(f'{path} holds no training state (no {", ".join(missing)}); '
                              'release weights cannot be resumed')
    return blob


def restore_training_state(path: Path, blob: Dict, model: torch.nn.Module,
                           opt: torch.optim.Optimizer, sched) -> None:
    """Load weights, optimiser, LR scheduler and global RNG states from ``blob``.

    Args:
        path: the checkpoint's file, for messages.
        blob: from :func:`read_training_checkpoint`.
        model: the freshly built model of this run (its ``cfg.variant`` must match).
        opt: the optimiser over ``model``'s parameters.
        sched: the LR scheduler of ``opt``.

    Raises:
        CheckpointError: the state is damaged or belongs to another model; one line.
    """
    stored = blob.get('model')
    variant = stored.get('variant') if isinstance(stored, dict) else None
    if variant != model.cfg.variant:
        raise CheckpointError(f'{path} is a checkpoint of variant {variant!r}, this run trains '
                              f'{model.cfg.variant!r} (pass --variant {variant})')
    try:
        model.load_state_dict(blob['state_dict'])
        opt.load_state_dict(blob['optimizer'])
        sched.load_state_dict(blob['scheduler'])
        restore_rng(blob)
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f'{path} has damaged or mismatched training state '
                              f'({describe(exc)})') from None


def truncate_log(path: Path, step: int, header: List[str]) -> int:
    """Rewrite the CSV log ``path`` with one row per step up to ``step``, the checkpoint's.

    The resumed run logs the later steps again, so their rows (written before the process died)
    are dropped, as are rows cut short by a kill. A step logged twice (by an older version)
    keeps its last row. A missing or empty log is started with ``header``.

    Args:
        path: ``OUT/log.csv``; rows start with the step number.
        step: the last step to keep.
        header: column names for a new log.

    Returns:
        The number of rows dropped.
    """
    rows = []
    if path.exists():
        with open(path, newline='') as f:
            rows = list(csv.reader(f))
    head = rows[0] if rows else header
    by_step = {}
    for row in rows[1:]:
        if len(row) == len(head) and row[0].isdigit() and int(row[0]) <= step:
            by_step[int(row[0])] = row
    tmp = path.with_name(path.name + '.tmp')
    with open(tmp, 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(head)
        writer.writerows(by_step[s] for s in sorted(by_step))
    os.replace(tmp, path)  # atomic: a kill now leaves the old log or the new one
    return max(len(rows) - 1, 0) - len(by_step)
