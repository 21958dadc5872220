"""Trajectory metrics the field uses: ATE (Umeyama SE(3)/Sim(3)), RPE, KITTI t_err / r_err.

Pure numpy, no I/O (trajectory files: :mod:`hndesc_ros.datasets.poses`). Poses are (N, 4, 4)
T_world_cam arrays, associated one-to-one.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from hndesc_ros.errors import HndescError
from hndesc_ros.se3 import inv, rotation_angle

KITTI_LENGTHS = (100, 200, 300, 400, 500, 600, 700, 800)


def umeyama(src: np.ndarray, dst: np.ndarray, with_scale: bool = False
            ) -> Tuple[np.ndarray, np.ndarray, float]:
    """Least-squares (R, t, s) with dst ~ s R src + t for (N, 3) point sets (Umeyama 1991)."""
    if len(src) < 3:
        raise HndescError('alignment needs at least 3 poses')
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    cov = xd.T @ xs / len(src)
    U, D, Vt = np.linalg.svd(cov)
    S = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        S[2, 2] = -1
    R = U @ S @ Vt
    s = float(np.trace(np.diag(D) @ S) / (xs ** 2).sum(1).mean()) if with_scale else 1.0
    t = mu_d - s * R @ mu_s
    return R, t, s


def align(est: np.ndarray, gt: np.ndarray, mode: str = 'se3') -> np.ndarray:
    """Align (N, 4, 4) estimate onto ground truth ('se3', 'sim3' or 'none')."""
    if mode == 'none':
        return est.copy()
    if mode not in ('se3', 'sim3'):
        raise HndescError(f'alignment must be se3, sim3 or none, got {mode!r}')
    R, t, s = umeyama(est[:, :3, 3], gt[:, :3, 3], with_scale=(mode == 'sim3'))
    out = est.copy()
    out[:, :3, :3] = R @ est[:, :3, :3]
    out[:, :3, 3] = s * est[:, :3, 3] @ R.T + t
    return out


def ate(est: np.ndarray, gt: np.ndarray, mode: str = 'se3') -> Dict[str, float]:
    """Absolute trajectory error of positions after alignment (metres)."""
    _check(est, gt)
    err = np.linalg.norm(align(est, gt, mode)[:, :3, 3] - gt[:, :3, 3], axis=1)
    return {'rmse': float(np.sqrt((err ** 2).mean())), 'mean': float(err.mean()),
            'median': float(np.median(err)), 'max': float(err.max())}


def rpe(est: np.ndarray, gt: np.ndarray, delta: int = 1) -> Dict[str, float]:
    """Relative pose error over ``delta`` frames: translation RMSE (m), rotation RMSE (deg)."""
    _check(est, gt)
    if len(est) <= delta:
        raise HndescError(f'RPE needs more than {delta} poses')
    te, re = [], []
    for i in range(len(est) - delta):
        de = inv(est[i]) @ est[i + delta]
        dg = inv(gt[i]) @ gt[i + delta]
        e = inv(dg) @ de
        te.append(np.linalg.norm(e[:3, 3]))
        re.append(np.degrees(rotation_angle(e[:3, :3])))
    te, re = np.array(te), np.array(re)
    return {'trans_rmse': float(np.sqrt((te ** 2).mean())),
            'rot_rmse_deg': float(np.sqrt((re ** 2).mean()))}


def step_lengths(poses: np.ndarray) -> np.ndarray:
    """(N, 4, 4) poses -> (N,) metres from the previous pose (0 for the first)."""
    return np.r_[0.0, np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1)]


def path_length(poses: np.ndarray) -> float:
    """Total length of the camera path (m)."""
    return float(step_lengths(poses).sum())


def kitti_errors(est: np.ndarray, gt: np.ndarray, lengths: Sequence[int] = KITTI_LENGTHS,
                 step: int = 10) -> Optional[Dict[str, float]]:
    """KITTI devkit metric: mean t_err (%) and r_err (deg/100 m) over segments.

    Segments start every ``step`` frames and span each length in ``lengths`` (metres along
    the ground truth). Returns None when the run is shorter than the shortest length.
    """
    _check(est, gt)
    steps = np.linalg.norm(np.diff(gt[:, :3, 3], axis=0), axis=1)
    dist = np.concatenate([[0], np.cumsum(steps)])
    t_errs, r_errs = [], []
    for first in range(0, len(gt), step):
        for length in lengths:
            last = np.searchsorted(dist, dist[first] + length)
            if last >= len(gt):
                continue
            dg = inv(gt[first]) @ gt[last]
            de = inv(est[first]) @ est[last]
            e = inv(de) @ dg
            t_errs.append(np.linalg.norm(e[:3, 3]) / length)
            r_errs.append(rotation_angle(e[:3, :3]) / length)
    if not t_errs:
        return None
    return {'t_err_pct': float(100 * np.mean(t_errs)),
            'r_err_deg_per_100m': float(np.degrees(np.mean(r_errs)) * 100),
            'segments': len(t_errs)}


def evaluate(est: np.ndarray, gt: np.ndarray, mode: str = 'se3') -> Dict[str, float]:
    """ATE, RPE (1 frame) and KITTI errors in one flat dict."""
    a = ate(est, gt, mode)
    r = rpe(est, gt)
    out = {'ate_rmse_m': a['rmse'], 'ate_mean_m': a['mean'], 'ate_max_m': a['max'],
           'rpe_trans_m': r['trans_rmse'], 'rpe_rot_deg': r['rot_rmse_deg'],
           'path_length_m': path_length(gt), 'align': mode}
    out['ate_pct_of_path'] = 100 * out['ate_rmse_m'] / max(out['path_length_m'], 1e-9)
    # the error split into scale and shape: path length against the ground truth's, and the
    # ATE left after a Sim(3) alignment (what a correct scale would leave)
    out['path_ratio'] = (path_length(est) / max(out['path_length_m'], 1e-9)
                         if mode != 'sim3' else None)  # no scale to compare without it
    out['ate_sim3_m'] = a['rmse'] if mode == 'sim3' else ate(est, gt, 'sim3')['rmse']
    k = kitti_errors(est, gt)
    out['t_err_pct'] = k['t_err_pct'] if k else None
    out['r_err_deg_per_100m'] = k['r_err_deg_per_100m'] if k else None
    return out


def first_appearance_ate(est: np.ndarray, gt: np.ndarray, order: Sequence[int],
                         mode: str = 'se3') -> float:
    """ATE RMSE of a variant's run (frames ``order`` of a source sequence, some repeated) on
    the first appearance of each source frame: the trajectory of the frames without the
    repeats, comparable with a run without them (the ATE of the whole run weighs a repeated
    position once per repeat). est, gt: (N, 4, 4) with N = len(order)."""
    if len(order) != len(est):
        raise HndescError(f'{len(order)} frames in the order, {len(est)} poses')
    first = {}
    for k, i in enumerate(order):
        first.setdefault(i, k)
    idx = [first[i] for i in sorted(first)]
    return ate(est[idx], gt[idx], mode)['rmse']


def _check(est: np.ndarray, gt: np.ndarray) -> None:
    if est.shape != gt.shape or est.ndim != 3 or est.shape[1:] != (4, 4):
        raise HndescError(f'trajectories must both be (N, 4, 4); got {est.shape} and {gt.shape}')


def associate(stamps_a: np.ndarray, stamps_b: np.ndarray, max_diff: float = 0.01):
    """Nearest-stamp association -> (indices into a, indices into b)."""
    ia, ib = [], []
    for i, s in enumerate(stamps_a):
        j = int(np.argmin(np.abs(stamps_b - s)))
        if abs(stamps_b[j] - s) <= max_diff:
            ia.append(i)
            ib.append(j)
    return np.array(ia, int), np.array(ib, int)
