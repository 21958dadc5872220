#!/usr/bin/env python3
"""Monocular VO on KITTI 00 frames 0-199 (145 m): the fixed-lag bundle adjustment next to
two-view odometry (``vo.smoother=false``), on the same features, in one run.

    python bench/mono.py [--sequence 00] [--extractors residual-small sift] [--orders 5]
                         [--set key=value ...] [--json FILE]

The essential-matrix RANSAC draws its samples in the order of the matches, so one keypoint
order is one draw of the whole trajectory: besides the extractor's own order (what
``hndesc-vo kitti --mono`` gives) the back end also runs on ``--orders - 1`` shuffled orders of
the same keypoints (which also changes the tracker's F-RANSAC draws), and the table gives every
ATE, their mean and their maximum. With ground
truth scale (the published protocol: the metres travelled per frame come from the ground
truth) the alignment is SE(3); without it (``--no-gt-scale``) Sim(3).
"""
import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hndesc_ros.config import frontend_features, load_config, parse_overrides  # noqa: E402
from hndesc_ros.datasets.kitti import KittiSequence  # noqa: E402
from hndesc_ros.eval import trajectory as tj  # noqa: E402
from hndesc_ros.features.extractor import Extractor  # noqa: E402
from hndesc_ros.types import Features  # noqa: E402
from hndesc_ros.vo.odometry import MonoOdometry  # noqa: E402
from hndesc_ros.vo.tracker import TemporalTracker  # noqa: E402

DATA = Path(__file__).resolve().parent.parent.parent / 'shared' / 'data' / 'kitti' / 'sequences'


def shuffled(f: Features, rng) -> Features:
    """The same keypoints in another order (None: unchanged)."""
    if rng is None:
        return f
    p = rng.permutation(len(f))
    return Features(f.keypoints[p], f.descriptors[p], f.scores[p], f.scales[p], f.angles[p],
                    f.image_size)


def run_backend(feats, seq, cfg, scale_fn, rng):
    """Temporal tracks + MonoOdometry over cached features -> (N, 4, 4) poses, median ms per
    frame of both (the tracks are a front-end stage in the nodes), frames lost."""
    tracker = TemporalTracker(cfg.matching)
    odo = MonoOdometry(seq.calib, cfg.vo, scale_fn)
    poses, ms = [], []
    for k, f in enumerate(feats):
        t = time.perf_counter()
        poses.append(odo.process(tracker.track(shuffled(f, rng), seq.times[k], k)).T_world_cam)
        ms.append((time.perf_counter() - t) * 1e3)
    return np.array(poses), float(np.median(ms)), odo.lost


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--sequence', default='00')
    p.add_argument('--count', type=int, default=200, help='frames from the first')
    p.add_argument('--extractors', nargs='+', default=['residual-small'])
    p.add_argument('--orders', type=int, default=5, help='keypoint order + shuffled orders')
    p.add_argument('--no-gt-scale', action='store_true')
    p.add_argument('--set', nargs='*', default=[], metavar='KEY=VALUE')
    p.add_argument('--json')
    a = p.parse_args()
    logging.basicConfig(level=logging.ERROR)
    load = os.getloadavg()[0]
    seq = KittiSequence(DATA / a.sequence, count=a.count, mono=True)
    gt = seq.gt_relative()
    scale_fn = None if a.no_gt_scale else tj.step_lengths(gt).__getitem__
    align = 'sim3' if a.no_gt_scale else 'se3'
    rows = []
    for name in a.extractors:
        base = {**parse_overrides(a.set), 'features.extractor': name, 'vo.mono': True}
        ext = Extractor(frontend_features(load_config(None, base)))
        try:
            feats = [ext.extract(seq.frame(k).left) for k in range(len(seq))]
        finally:
            ext.close()
        for smoother in (False, True):
            c = load_config(None, {**base, 'vo.smoother': smoother})
            ates, ms, lost = [], [], 0
            for i in range(a.orders):
                rng = None if i == 0 else np.random.default_rng(i - 1)
                poses, m, n_lost = run_backend(feats, seq, c, scale_fn, rng)
                ates.append(tj.evaluate(poses, gt, align)['ate_rmse_m'])
                ms.append(m)
                lost += n_lost
            rows.append({'extractor': name,
                         'back end': 'fixed-lag BA' if smoother else 'two-view',
                         'ate_keypoint_order_m': ates[0], 'ate_orders_m': ates,
                         'ate_mean_m': float(np.mean(ates)), 'ate_max_m': float(np.max(ates)),
                         'backend_ms_per_frame': float(np.median(ms)), 'lost': lost})
            r = rows[-1]
            print(f"{name:15s} {r['back end']:13s} ATE keypoint order {ates[0]:.3f} m, "
                  f"{a.orders} orders {' '.join(f'{x:.3f}' for x in ates)} "
                  f"(mean {r['ate_mean_m']:.3f}, max {r['ate_max_m']:.3f}), "
                  f"tracks + back end {r['backend_ms_per_frame']:.0f} ms/frame, "
                  f'lost {lost}', flush=True)
    path = tj.path_length(gt)
    print(f'\nKITTI {a.sequence}, {len(seq)} frames ({path:.0f} m), '
          f"{'Sim(3), no GT scale' if a.no_gt_scale else 'GT scale, SE(3)'}, load {load:.1f}")
    if a.json:
        Path(a.json).write_text(json.dumps({'load': load, 'sequence': a.sequence,
                                            'gt_scale': not a.no_gt_scale, 'rows': rows},
                                           indent=1))


if __name__ == '__main__':
    main()
