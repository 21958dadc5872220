"""Matching accuracy on real image pairs without homographies (KITTI): a match is correct when
it satisfies the ground-truth epipolar geometry within a threshold.

Stereo pairs (rectified): same row within ``t`` px and positive disparity. Temporal pairs
(consecutive left frames): distance to the epipolar line of the ground-truth relative pose
within ``t`` px (symmetric). Mutual nearest neighbour on all keypoints, as for HPatches.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence

import numpy as np

from hndesc_ros.features.matching import match_numpy
from hndesc_ros.se3 import skew
from hndesc_ros.types import Features


def epipolar_errors(p0: np.ndarray, p1: np.ndarray, K: np.ndarray, T_0_1: np.ndarray):
    """Symmetric point-to-epipolar-line distances (px) for (N, 2) matches; T_0_1 maps camera-1
    coordinates into camera 0 (T_world_0^-1 T_world_1)."""
    T_1_0 = np.linalg.inv(T_0_1)
    E = skew(T_1_0[:3, 3]) @ T_1_0[:3, :3]  # x1^T E x0 = 0
    Ki = np.linalg.inv(K)
    F = Ki.T @ E @ Ki
    h0 = np.c_[p0, np.ones(len(p0))]
    h1 = np.c_[p1, np.ones(len(p1))]
    l1 = h0 @ F.T   # lines in image 1
    l0 = h1 @ F     # lines in image 0
    d1 = np.abs((l1 * h1).sum(1)) / np.linalg.norm(l1[:, :2], axis=1)
    d0 = np.abs((l0 * h0).sum(1)) / np.linalg.norm(l0[:, :2], axis=1)
    return np.maximum(d0, d1)


def kitti_pair_mma(seq, extract: Callable[[np.ndarray], Features],
                   frames: Sequence[int] = range(0, 50, 5),
                   thresholds: Sequence[float] = (1, 2, 3, 5),
                   change: Optional[Callable[[np.ndarray], np.ndarray]] = None
                   ) -> Dict[str, Dict]:
    """MMA per threshold on stereo (k_left, k_right) and temporal (k, k+1) pairs; ``change``
    (e.g. darkening) is applied to the second image of every temporal pair (k+1)."""
    gt = seq.gt_relative()
    K = seq.calib.K
    res = {'stereo': [], 'temporal': []}
    for k in frames:
        fr, nxt = seq.frame(k), seq.frame(k + 1)
        fl, fr_ = extract(fr.left), extract(fr.right)
        fn = extract(nxt.left if change is None else change(nxt.left))
        m = match_numpy(fl.descriptors, fr_.descriptors)
        p0, p1 = fl.keypoints[m.indices[:, 0]], fr_.keypoints[m.indices[:, 1]]
        ok_disp = (p0[:, 0] - p1[:, 0]) > 0
        err = np.where(ok_disp, np.abs(p0[:, 1] - p1[:, 1]), np.inf)
        res['stereo'].append([float((err <= t).mean()) if len(err) else 0.0 for t in thresholds])
        m = match_numpy(fl.descriptors, fn.descriptors)
        p0, p1 = fl.keypoints[m.indices[:, 0]], fn.keypoints[m.indices[:, 1]]
        err = epipolar_errors(p0, p1, K, np.linalg.inv(gt[k]) @ gt[k + 1])
        res['temporal'].append([float((err <= t).mean()) if len(err) else 0.0
                                for t in thresholds])
    return {kind: {f'mma@{t:g}': float(np.mean([r[i] for r in rows]))
                   for i, t in enumerate(thresholds)} for kind, rows in res.items()}
