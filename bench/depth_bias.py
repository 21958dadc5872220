#!/usr/bin/env python3
"""Is stereo depth biased on this rig? One frame's stereo points, by depth band, against the
ground-truth motion to the next frame.

    python bench/depth_bias.py [--sequences 06 01] [--step 2] [--offset PX ...] [--json FILE]

For every ``--step``-th frame k: the left keypoints with a stereo match are triangulated at
frame k (the VO front end's extraction and stereo), matched by descriptor into frame k+1, and
PnP-RANSAC solves the motion from the points of one depth band only. The ratio of its
translation to the ground truth's is 1 when that band's depths are right. A ratio that grows
with depth as (d + offset) / d (d: the measured disparity) means a disparity offset common to
all points (a rectification left a fraction of a pixel off): the bench fits that offset. Deep
points then stretch the trajectory; the VO estimates the offset from motion alone
(``vo.estimate_disparity_offset``, ``disparity_offset_px`` in its metrics). ``--offset``
removes given offsets (one per sequence) from the right u first: with the right one the ratios
flatten.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hndesc_ros.config import Config  # noqa: E402
from hndesc_ros.datasets.kitti import KittiSequence  # noqa: E402
from hndesc_ros.features.matching import match_numpy  # noqa: E402
from hndesc_ros.se3 import inv  # noqa: E402
from hndesc_ros.vo.geometry import solve_pnp, triangulate_stereo  # noqa: E402
from hndesc_ros.vo.pipeline import StereoFrontend  # noqa: E402
from peers import SHARED, write_rows  # noqa: E402

BANDS_BASELINES = ((0, 20), (20, 40), (40, 80), (80, 160))  # depth bands in stereo baselines


def band_ratios(seq: KittiSequence, step: int, offset: float = 0.0) -> list:
    """[(band, disparity at the band's median depth, median translation ratio, frames)]."""
    cfg = Config()
    fe = StereoFrontend(seq.calib, cfg)
    gt, c = seq.gt_relative(), seq.calib
    ratios = {b: [] for b in BANDS_BASELINES}
    depths = {b: [] for b in BANDS_BASELINES}
    try:
        for k in range(0, len(seq) - 1, step):
            a, b = (fe.extract(f.left, f.right) for f in (seq.frame(k), seq.frame(k + 1)))
            u_right = fe.stereo(a) - offset
            m = match_numpy(a.left.descriptors, b.left.descriptors, 0.9, 1.2).indices
            m = m[np.isfinite(u_right[m[:, 0]])]
            X = triangulate_stereo(a.left.keypoints[m[:, 0]], u_right[m[:, 0]], c)
            T_true = inv(gt[k + 1]) @ gt[k]
            for band in BANDS_BASELINES:
                lo, hi = (v * c.baseline for v in band)
                sel = (X[:, 2] >= lo) & (X[:, 2] < hi)
                if sel.sum() < 12:
                    continue
                T, inl = solve_pnp(X[sel], b.left.keypoints[m[sel, 1]], c, T_true, 1.5, 300)
                if T is not None and len(inl) >= 10:
                    ratios[band].append(np.linalg.norm(T[:3, 3]) / np.linalg.norm(T_true[:3, 3]))
                    depths[band].append(np.median(X[sel][inl, 2]))
    finally:
        fe.close()
    rows = []
    for band in BANDS_BASELINES:
        if ratios[band]:
            disparity = c.fx * c.baseline / float(np.median(depths[band]))
            rows.append((band, disparity, float(np.median(ratios[band])), len(ratios[band])))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--sequences', nargs='+', default=['06', '01'])
    ap.add_argument('--step', type=int, default=2, help='every n-th frame pair')
    ap.add_argument('--offset', type=float, nargs='+', help='px removed from the right u, '
                    'one per sequence (e.g. the VO\'s disparity_offset_px)')
    ap.add_argument('--json', help='write the rows here')
    a = ap.parse_args()
    out = []
    offsets_in = a.offset or [0.0] * len(a.sequences)
    if len(offsets_in) != len(a.sequences):
        ap.error('--offset: one value per sequence')
    for name, removed in zip(a.sequences, offsets_in):
        seq = KittiSequence(SHARED / 'data' / 'kitti' / 'sequences' / name)
        rows = band_ratios(seq, a.step, removed)
        # ratio = true / measured disparity = (d + offset) / d, d measured
        #   =>  offset = d (ratio - 1), weighted by frames
        offsets = [(d * (r - 1), n) for _, d, r, n in rows]
        offset = sum(o * n for o, n in offsets) / max(sum(n for _, n in offsets), 1)
        for band, d, r, n in rows:
            print(f'{name} depth {band[0]:>3}-{band[1]:<3} baselines  disparity {d:6.1f} px  '
                  f'translation / GT {r:.4f}  ({n} frame pairs)')
            out.append({'sequence': name, 'offset_removed_px': removed, 'band_baselines': band,
                        'disparity_px': d, 'translation_ratio': r, 'frames': n})
        print(f'{name} fitted disparity offset {offset:+.2f} px after removing {removed:.2f} px '
              '(positive: disparities too small)')
    write_rows(a.json, out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
