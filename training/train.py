#!/usr/bin/env python3
"""Train a hndesc_ros descriptor network self-supervised on homography-warped pairs.

    python training/train.py                                  # defaults (config/train.yaml)
    python training/train.py --variant cnn --steps 2000 --out runs/cnn
    python training/train.py --out runs/residual --resume     # continue exactly
    torchrun --nproc_per_node 4 training/train.py ...         # DDP

Writes ``OUT/last.pt`` (full training state, every ``ckpt_every`` steps and on Ctrl-C),
``OUT/hndesc_<variant>.pt`` (release weights, fp16), ``OUT/log.csv`` and TensorBoard events
when tensorboard is installed.

Resuming is exact: a run killed at any point (even ``kill -9``) and continued with
``--resume`` logs the same losses as an uninterrupted one from the checkpoint's step on
(weights, optimiser, LR schedule, RNG states and data position are restored; ``log.csv`` keeps
one row per step). Ctrl-C finishes the current step, saves and exits; a second Ctrl-C aborts.
With ``max_minutes`` the run may end early and the LR schedule and progress bar follow time.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import logging
import math
import os
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from data import HomographyPairs, PairConfig, list_images, warp_points  # noqa: E402
from losses import batch_hard_hinge, detector_loss  # noqa: E402
from resume import CheckpointError, read_training_checkpoint  # noqa: E402
from resume import restore_training_state, rng_state, truncate_log  # noqa: E402

from hndesc_ros.features.matching import match_torch  # noqa: E402
from hndesc_ros.models.checkpoint import save_checkpoint  # noqa: E402
from hndesc_ros.models.fusion import build_model, fuse, variant_config  # noqa: E402
from hndesc_ros.models.sampling import sample_dense_torch  # noqa: E402

LOG = logging.getLogger('train')
LOG_COLUMNS = ['step', 'loss', 'desc_loss', 'det_loss', 'acc', 'lr', 'val_mma3', 'seconds']
ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / 'shared' / 'data'


@dataclass
class TrainConfig:
    variant: str = 'residual'
    images: List[str] = field(default_factory=lambda: [
        str(SHARED / 'images'), str(SHARED / 'kitti' / 'sequences' / '00'),
        str(SHARED / 'kitti' / 'sequences' / '01')])
    out: str = 'runs/residual'
    steps: int = 3000
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup: int = 100
    margin: float = 1.0
    exclusion_px: float = 8.0
    detector_weight: float = 1.0
    seed: int = 0
    device: str = 'auto'
    workers: int = 2
    threads: int = 2
    ckpt_every: int = 250
    val_every: int = 250
    val_pairs: int = 16
    log_every: int = 10
    max_minutes: float = 0.0        # > 0: stop (and release) after this much training time
    pairs: PairConfig = field(default_factory=PairConfig)


def load_train_config(path: str | None, overrides: List[str]) -> TrainConfig:
    """Defaults <- YAML file <- ``key=value`` overrides (``pairs.height=256`` for nested)."""
    cfg = TrainConfig()
    data = yaml.safe_load(Path(path).read_text()) if path else {}
    for kv in overrides:
        if '=' not in kv:
            raise SystemExit(f'train.py: override {kv!r} is not key=value')
        key, value = kv.split('=', 1)
        node = data
        *parents, leaf = key.split('.')
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(value)
    for key, value in (data or {}).items():
        if key == 'pairs':
            for k, v in value.items():
                if not hasattr(cfg.pairs, k):
                    raise SystemExit(f'train.py: unknown option pairs.{k}')
                setattr(cfg.pairs, k, type(getattr(cfg.pairs, k))(v))
        elif hasattr(cfg, key):
            cur = getattr(cfg, key)
            setattr(cfg, key, value if isinstance(cur, list) else type(cur)(value))
        else:
            raise SystemExit(f'train.py: unknown option {key}')
    return cfg


class _Range(torch.utils.data.Sampler):
    """Sample indices start..stop (one per training sample, so resuming is exact)."""

    def __init__(self, start: int, stop: int, rank: int = 0, world: int = 1):
        self.start, self.stop, self.rank, self.world = start, stop, rank, world

    def __iter__(self):
        return iter(range(self.start + self.rank, self.stop, self.world))

    def __len__(self):
        return len(range(self.start + self.rank, self.stop, self.world))


def training_step(model, batch, cfg: TrainConfig):
    """One forward pass -> (loss, stats dict)."""
    im = torch.cat([batch['image0'], batch['image1']])
    kp = torch.cat([batch['kp0'], batch['kp1']])
    sift = torch.cat([batch['sift0'], batch['sift1']])
    feat = model.h.encode(im)
    dense = model.h.describe(feat)
    cnn = sample_dense_torch(dense, kp)
    b, k, _ = kp.shape
    refined = model.f(sift.reshape(b * k, -1)).reshape(b, k, -1) if model.f is not None else None
    desc = fuse(cnn, refined)
    half = len(batch['image0'])
    valid = batch['valid']
    d0, d1 = desc[:half][valid], desc[half:][valid]
    ids = torch.arange(half, device=valid.device)[:, None].expand_as(valid)[valid]
    loss_d, acc = batch_hard_hinge(d0, d1, batch['kp1'][valid], ids, cfg.margin, cfg.exclusion_px)
    loss = loss_d
    stats = {'desc_loss': loss_d.item(), 'acc': acc.item()}
    if model.h.has_detector and cfg.detector_weight > 0:
        labels = torch.cat([batch['label0'], batch['label1']])
        loss_k = detector_loss(model.h.detector_logits(feat), labels)
        loss = loss + cfg.detector_weight * loss_k
        stats['det_loss'] = loss_k.item()
    stats['loss'] = loss.item()
    return loss, stats


@torch.no_grad()
def validate(model, ds: HomographyPairs, n: int, device) -> float:
    """MMA@3 on held-out pairs: SIFT keypoints detected in both views, mutual NN, true H."""
    model.eval()
    correct, total = 0, 0
    for i in range(min(n, len(ds))):
        item = ds[i]
        g = [(item[f'image{j}'][0].numpy() * 255).astype(np.uint8) for j in (0, 1)]
        descs, kps = [], []
        for j in (0, 1):
            f = ds.sift(g[j])
            kp = torch.from_numpy(f.keypoints).to(device)
            out = model.h(item[f'image{j}'][None].to(device), with_scores=False)
            cnn = sample_dense_torch(out['dense'], kp[None])[0]
            ref = model.f(torch.from_numpy(f.descriptors).to(device)) if model.f else None
            descs.append(fuse(cnn, ref))
            kps.append(f.keypoints)
        idx, _ = match_torch(descs[0], descs[1])
        idx = idx.cpu().numpy()
        if len(idx):
            proj = warp_points(item['H'].numpy().astype(np.float64), kps[0][idx[:, 0]])
            err = np.linalg.norm(proj - kps[1][idx[:, 1]], axis=1)
            correct += int((err <= 3).sum())
            total += len(idx)
    model.train()
    return correct / max(total, 1)


def set_seed(seed: int) -> None:
    """Seed the Python, numpy and torch global RNGs."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class StopRequest:
    """Ctrl-C (SIGINT) asks the loop to stop after the current step, so that the state saved
    then is a whole step's; a second Ctrl-C raises KeyboardInterrupt at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGINT, self._handle)
            self._previous = previous if previous is not None else signal.default_int_handler

    def _handle(self, signum, frame) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, self._previous)
        print('\nCtrl-C: stopping after this step (Ctrl-C again to abort)', file=sys.stderr)

    def close(self) -> None:
        """Put the previous SIGINT handler back."""
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _worker_init(_worker_id: int) -> None:
    """DataLoader workers ignore Ctrl-C; the main process stops them when it is done."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument('--config', help='YAML training config (default config/train.yaml)')
    p.add_argument('--variant', choices=['residual', 'cnn', 'residual-small'])
    p.add_argument('--images', nargs='+', help='training image folders (recursive)')
    p.add_argument('--out', help='output folder')
    p.add_argument('--steps', type=int)
    p.add_argument('--batch-size', type=int)
    p.add_argument('--lr', type=float)
    p.add_argument('--device', help='auto, cpu, cuda')
    p.add_argument('--workers', type=int)
    p.add_argument('--seed', type=int)
    p.add_argument('--resume', nargs='?', const='', metavar='CKPT',
                   help='continue exactly from CKPT (default OUT/last.pt)')
    p.add_argument('--set', nargs='*', default=[], metavar='KEY=VALUE', help='config overrides')
    p.add_argument('--kill-after-step', type=int, metavar='N',
                   help='testing: SIGKILL this process right after step N (a crash)')
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(message)s')

    default_cfg = ROOT / 'config' / 'train.yaml'
    overrides = list(args.set)
    for name in ('variant', 'out', 'steps', 'batch_size', 'lr', 'device', 'workers', 'seed'):
        if getattr(args, name) is not None:
            overrides.append(f'{name}={getattr(args, name)}')
    if args.images:
        overrides.append('images=' + json.dumps(args.images))
    try:
        cfg = load_train_config(args.config or (default_cfg if default_cfg.exists() else None),
                                overrides)
        variant_config(cfg.variant)
        files = list_images(cfg.images)
    except (ValueError, FileNotFoundError) as exc:
        print(f'train.py: {exc}', file=sys.stderr)
        return 2
    if len(files) < 2:
        print('train.py: need at least 2 training images', file=sys.stderr)
        return 2
    out = Path(cfg.out)
    last = out / 'last.pt'
    ckpt = Path(args.resume) if args.resume else last
    blob = None
    if args.resume is not None:
        try:
            blob = read_training_checkpoint(ckpt)
        except CheckpointError as exc:
            print(f'train.py: cannot resume: {exc}', file=sys.stderr)
            return 2

    ddp = 'RANK' in os.environ and 'WORLD_SIZE' in os.environ
    rank, world = (int(os.environ['RANK']), int(os.environ['WORLD_SIZE'])) if ddp else (0, 1)
    if cfg.device == 'auto':
        cfg.device = 'cuda' if torch.cuda.is_available() else 'cpu'
    device = torch.device(cfg.device)
    if ddp:
        torch.distributed.init_process_group('nccl' if device.type == 'cuda' else 'gloo')
        if device.type == 'cuda':
            device = torch.device('cuda', int(os.environ.get('LOCAL_RANK', 0)))
            torch.cuda.set_device(device)
    torch.set_num_threads(cfg.threads)
    set_seed(cfg.seed)

    val_files = files[::10]
    train_files = [f for f in files if f not in set(val_files)]
    out.mkdir(parents=True, exist_ok=True)
    total = cfg.steps * cfg.batch_size * world  # each rank takes every world-th sample
    ds = HomographyPairs(train_files, cfg.pairs, cfg.seed, length=total)
    val_ds = HomographyPairs(val_files, cfg.pairs, cfg.seed + 1000, length=cfg.val_pairs)

    model = build_model(cfg.variant).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    step, elapsed = 0, 0.0

    def progress() -> float:
        """Fraction of the budget used: steps, or minutes when max_minutes is set."""
        frac = step / cfg.steps
        if cfg.max_minutes > 0:
            frac = max(frac, elapsed / (60.0 * cfg.max_minutes))
        return min(frac, 1.0)

    def lr_at(_):
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        return max(0.5 * (1 + math.cos(math.pi * progress())), 0.01)

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    # The loader draws its worker seed from its own generator, not from the global torch RNG,
    # so the global stream is the same whether or not the run was resumed.
    loader_rng = torch.Generator().manual_seed(cfg.seed)
    data_state = {'seed': cfg.seed, 'batch_size': cfg.batch_size, 'world': world}
    if blob is not None:
        try:
            restore_training_state(ckpt, blob, model, opt, sched)
        except CheckpointError as exc:
            print(f'train.py: cannot resume: {exc}', file=sys.stderr)
            return 2
        step, elapsed = int(blob['step']), float(blob.get('elapsed', 0.0))
        saved = blob.get('data', {})
        ds.epoch = saved.get('epoch', ds.epoch)
        if 'loader_rng' in saved:
            loader_rng.set_state(saved['loader_rng'])
        changed = [k for k, v in data_state.items() if saved.get(k, v) != v]
        if changed:
            LOG.warning('resuming with another %s than the checkpoint: the data order differs '
                        'from an uninterrupted run', ', '.join(changed))
        LOG.info('resumed from %s at step %d', ckpt, step)
    data_state['loader_rng'] = loader_rng.get_state()  # before the loader draws its seed
    if ddp:  # same start everywhere; gradients are averaged after each backward
        for t in model.state_dict().values():
            torch.distributed.broadcast(t, 0)

    def save(path, release=False):
        if rank != 0:
            return
        meta = {'variant': cfg.variant, 'steps': step, 'train_seconds': round(elapsed, 1),
                'device': torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu',
                'images': len(train_files), 'config': dataclasses.asdict(cfg)}
        extra = {} if release else {
            'step': step, 'elapsed': elapsed, 'optimizer': opt.state_dict(),
            'scheduler': sched.state_dict(), **rng_state(),
            'data': {**data_state, 'epoch': ds.epoch,
                     'next_sample': step * cfg.batch_size * world}}
        save_checkpoint(path, model, meta, half=release, extra=extra)
        return step

    sampler = _Range(step * cfg.batch_size * world, total, rank, world)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=cfg.batch_size, sampler=sampler,
        num_workers=cfg.workers, pin_memory=device.type == 'cuda',
        persistent_workers=False, drop_last=True, generator=loader_rng,
        worker_init_fn=_worker_init)
    writer = None
    if rank == 0:
        try:
            from torch.utils.tensorboard import SummaryWriter
            # a resumed run hides the events logged after the checkpoint by the dead process
            purge = step + 1 if blob is not None else None
            writer = SummaryWriter(str(out / 'tb'), purge_step=purge)
        except Exception:  # tensorboard is optional
            writer = None
    log_path = out / 'log.csv'
    if rank == 0 and blob is not None:
        dropped = truncate_log(log_path, step, LOG_COLUMNS)
        if dropped:
            LOG.info('%s: dropped %d rows after step %d or repeated (steps after the '
                     'checkpoint are trained again)', log_path, dropped, step)
    if rank == 0:
        log_file = open(log_path, 'a' if blob is not None else 'w', newline='')
    else:
        log_file = open(os.devnull, 'w')
    log = csv.writer(log_file)
    if blob is None:
        log.writerow(LOG_COLUMNS)
        log_file.flush()
    from tqdm import tqdm
    bar = tqdm(total=cfg.steps, initial=step, disable=rank != 0, dynamic_ncols=True)
    model.train()
    stop = StopRequest()
    saved_step = step if blob is not None and ckpt == last else None
    t_last = time.time()
    try:
        for batch in loader:
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            loss, stats = training_step(model, batch, cfg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if ddp:
                for prm in model.parameters():
                    if prm.grad is not None:
                        torch.distributed.all_reduce(prm.grad)
                        prm.grad /= world
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            sched.step()
            step += 1
            now = time.time()
            elapsed += now - t_last
            t_last = now
            val = ''
            done, stopping = progress() >= 1.0, stop.requested
            if ddp:  # every rank stops at the same step
                flags = torch.tensor([float(done), float(stopping)], device=device)
                torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
                done, stopping = bool(flags[0].item()), bool(flags[1].item())
            if rank == 0 and (step % cfg.val_every == 0 or done):
                val = round(validate(model, val_ds, cfg.val_pairs, device), 4)
                LOG.info('step %d val MMA@3 %.4f', step, val)
            if rank == 0 and (step % cfg.log_every == 0 or val != ''):
                lr = sched.get_last_lr()[0]
                log.writerow([step, round(stats['loss'], 5), round(stats['desc_loss'], 5),
                              round(stats.get('det_loss', 0.0), 5), round(stats['acc'], 4),
                              f'{lr:.2e}', val, round(elapsed, 1)])
                log_file.flush()
                if writer:
                    for k, v in stats.items():
                        writer.add_scalar(k, v, step)
                    if val != '':
                        writer.add_scalar('val_mma3', val, step)
            if cfg.max_minutes > 0:  # the time cap may end the run first: estimate its steps
                bar.total = round(step / progress())
            bar.set_postfix(loss=f'{stats["loss"]:.3f}', acc=f'{stats["acc"]:.2f}')
            bar.update(1)
            if step % cfg.ckpt_every == 0 or (stopping and not done):
                saved_step = save(last)
            if args.kill_after_step == step:
                os.kill(os.getpid(), signal.SIGKILL)
            if stopping and not done:
                print(f'\ninterrupted at step {step}; saved {last} (continue with --resume)',
                      file=sys.stderr)
                return 130
            if done:
                break
    except KeyboardInterrupt:
        kept = (f'{last} holds step {saved_step}' if saved_step is not None
                else f'{last} was not written by this run')
        print(f'\naborted in step {step + 1}; {kept} (continue with --resume)', file=sys.stderr)
        return 130
    finally:
        stop.close()
        bar.close()
        log_file.close()
    save(last)
    release = out / f'hndesc_{cfg.variant}.pt'
    save(release, release=True)
    if rank == 0:
        LOG.info('done: %d steps in %.0f s; weights %s', step, elapsed, release)
    if ddp:
        torch.distributed.destroy_process_group()
    return 0


if __name__ == '__main__':
    sys.exit(main())
