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

``--pairs`` asks a second question: what offset does each frame pair imply? For every
``--step``-th pair, the points matched from frame k (with stereo) to frame k+1 and kept by
PnP-RANSAC give two estimates: the VO's own two-frame bundle adjustment with free motion
(``two_view_offset``), and the offset that best explains frame k+1 with the motion held at the
ground truth's (searched on a 0.02 px grid, frame k's stereo points reprojected, errors capped
at 2 px). Their medians, over the first and the second half of the sequence too, show whether
the estimator or the scene moves the value (on 01: 1.0 px in the first half, 1.7 in the
second, with the ground-truth motion as well).
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
from hndesc_ros.vo.geometry import project, solve_pnp, triangulate_stereo  # noqa: E402
from hndesc_ros.vo.pipeline import StereoFrontend  # noqa: E402
from hndesc_ros.vo.rectification import two_view_offset  # noqa: E402
from peers import SHARED, write_rows  # noqa: E402

BANDS_BASELINES = ((0, 20), (20, 40), (40, 80), (80, 160))  # depth bands in stereo baselines


def band_ratios(seq: KittiSequence, step: int, offset: float = 0.0) -> list:
    """[(band, disparity at the band's median depth, median translation ratio, frames)]."""
    cfg = Config()
    cfg.vo.klt_frames = 0  # every pair extracted (both frames of a pair need features)
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


def pair_offsets(seq: KittiSequence, step: int) -> list:
    """[(frame k, offset with free motion or None, offset with the ground-truth motion,
    split)] for the pairs (k, k + 1), k a multiple of ``step`` (see the module docstring).
    split: None, or (the free estimate's stated standard error, the difference of the free
    estimates from the two halves of its points, every other point each): the halves'
    differences tell how far one pair's estimate really scatters (their sd / 2 for all the
    points), against what its information states."""
    cfg = Config()
    cfg.vo.klt_frames = 0  # every pair extracted (both frames of a pair need features)
    fe = StereoFrontend(seq.calib, cfg)
    gt, c = seq.gt_relative(), seq.calib
    grid = np.arange(-3.0, 5.0, 0.02)
    out = []
    try:
        for k in range(0, len(seq) - 1, step):
            a, b = (fe.extract(f.left, f.right) for f in (seq.frame(k), seq.frame(k + 1)))
            ua, ub = fe.stereo(a), fe.stereo(b)
            m = match_numpy(a.left.descriptors, b.left.descriptors, 0.9, 1.2).indices
            m = m[np.isfinite(ua[m[:, 0]])]
            m = m[a.left.keypoints[m[:, 0], 0] - ua[m[:, 0]] > 1.0]
            if len(m) < 20:
                continue
            uv0, ur0 = a.left.keypoints[m[:, 0]], ua[m[:, 0]]
            uv1, ur1 = b.left.keypoints[m[:, 1]], ub[m[:, 1]]
            T_true = inv(gt[k + 1]) @ gt[k]
            T, inl = solve_pnp(triangulate_stereo(uv0, ur0, c), uv1, c, T_true, 1.5, 300)
            if T is None or len(inl) < 20:
                continue
            uv0, ur0, uv1, ur1 = uv0[inl], ur0[inl], uv1[inl], ur1[inl]
            free = two_view_offset(uv0, ur0, uv1, ur1, c, T, 0.0, cfg.vo.pixel_sigma)
            halves = [two_view_offset(uv0[h], ur0[h], uv1[h], ur1[h], c, T, 0.0,
                                      cfg.vo.pixel_sigma) for h in (slice(0, None, 2),
                                                                    slice(1, None, 2))]
            cost = []
            for o in grid:
                ok = uv0[:, 0] - (ur0 - o) > 0.5
                X = triangulate_stereo(uv0[ok], ur0[ok] - o, c)
                e = np.linalg.norm(project(X, T_true, c) - uv1[ok], axis=1)
                cost.append(np.mean(np.minimum(e, 2.0) ** 2) if ok.sum() >= 10 else np.inf)
            split = (None if free is None or None in halves
                     else (1 / np.sqrt(free[1]), halves[0][0] - halves[1][0]))
            out.append((k, None if free is None else free[0], float(grid[int(np.argmin(cost))]),
                        split))
    finally:
        fe.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--sequences', nargs='+', default=['06', '01'])
    ap.add_argument('--step', type=int, default=2, help='every n-th frame pair')
    ap.add_argument('--offset', type=float, nargs='+', help='px removed from the right u, '
                    'one per sequence (e.g. the VO\'s disparity_offset_px)')
    ap.add_argument('--pairs', action='store_true', help='the offset each frame pair implies, '
                    'with free and with ground-truth motion (instead of the depth bands)')
    ap.add_argument('--json', help='write the rows here')
    a = ap.parse_args()
    out = []
    if a.pairs:
        for name in a.sequences:
            rows = pair_offsets(KittiSequence(SHARED / 'data' / 'kitti' / 'sequences' / name),
                                a.step)
            half = len(rows) // 2
            for label, col in (('free motion', 1), ('ground-truth motion', 2)):
                v = [r[col] for r in rows if r[col] is not None]
                h = [r[col] for r in rows[:half] if r[col] is not None]
                t = [r[col] for r in rows[half:] if r[col] is not None]
                print(f'{name} offset with {label}: median {np.median(v):+.2f} px over {len(v)} '
                      f'pairs (first half {np.median(h):+.2f}, second half {np.median(t):+.2f})')
            split = [r[3] for r in rows if r[3] is not None]
            if len(split) > 2:
                stated = np.median([e for e, _ in split])
                halves = np.std([d for _, d in split]) / 2
                scatter = np.std([r[1] for r in rows if r[1] is not None])
                print(f"{name} one pair's free estimate: stated error {stated:.2f} px (median), "
                      f'{halves:.2f} px from its two halves; the pairs scatter by {scatter:.2f}')
            out += [{'sequence': name, 'frame': k, 'offset_free_px': f, 'offset_gt_motion_px': g}
                    for k, f, g, _ in rows]
        write_rows(a.json, out)
        return 0
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
