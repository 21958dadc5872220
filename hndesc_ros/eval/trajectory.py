"""Trajectory metrics the field uses: ATE (Umeyama SE(3)/Sim(3)), RPE, KITTI t_err / r_err.

Pure numpy, no I/O besides the small readers/writers at the bottom. Poses are (N, 4, 4)
T_world_cam arrays, associated one-to-one.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from hndesc_ros.errors import HndescError
from hndesc_ros.types import from_quat, to_quat  # noqa: F401  (re-exported)

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
        de = np.linalg.inv(est[i]) @ est[i + delta]
        dg = np.linalg.inv(gt[i]) @ gt[i + delta]
        e = np.linalg.inv(dg) @ de
        te.append(np.linalg.norm(e[:3, 3]))
        re.append(np.degrees(np.arccos(np.clip((np.trace(e[:3, :3]) - 1) / 2, -1, 1))))
    te, re = np.array(te), np.array(re)
    return {'trans_rmse': float(np.sqrt((te ** 2).mean())),
            'rot_rmse_deg': float(np.sqrt((re ** 2).mean()))}


def path_length(poses: np.ndarray) -> float:
    """Total length of the camera path (m)."""
    return float(np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1).sum())


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
            dg = np.linalg.inv(gt[first]) @ gt[last]
            de = np.linalg.inv(est[first]) @ est[last]
            e = np.linalg.inv(de) @ dg
            t_errs.append(np.linalg.norm(e[:3, 3]) / length)
            r_errs.append(np.arccos(np.clip((np.trace(e[:3, :3]) - 1) / 2, -1, 1)) / length)
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
    k = kitti_errors(est, gt)
    out['t_err_pct'] = k['t_err_pct'] if k else None
    out['r_err_deg_per_100m'] = k['r_err_deg_per_100m'] if k else None
    return out


def _check(est: np.ndarray, gt: np.ndarray) -> None:
    if est.shape != gt.shape or est.ndim != 3 or est.shape[1:] != (4, 4):
        raise HndescError(f'trajectories must both be (N, 4, 4); got {est.shape} and {gt.shape}')


# ----------------------------------------------------------------------------- file formats
def write_kitti(path: str | Path, poses: np.ndarray) -> Path:
    """KITTI format: 12 numbers a line (the top 3x4 of each pose)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(path, poses[:, :3, :4].reshape(-1, 12), fmt='%.9e')
    return Path(path)


def write_tum(path: str | Path, stamps: np.ndarray, poses: np.ndarray) -> Path:
    """TUM format: ``stamp tx ty tz qx qy qz qw`` a line."""
    rows = [np.r_[s, T[:3, 3], to_quat(T[:3, :3])] for s, T in zip(stamps, poses)]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(path, np.array(rows).reshape(-1, 8), fmt='%.9f')
    return Path(path)


def read_trajectory(path: str | Path,
                    fmt: str = 'kitti') -> Tuple[Optional[np.ndarray], np.ndarray]:
    """Read a KITTI or TUM file -> (stamps or None, (N, 4, 4) poses)."""
    path = Path(path)
    if not path.is_file():
        raise HndescError(f'trajectory file not found: {path}')
    try:
        rows = np.loadtxt(path, ndmin=2, comments='#')
    except ValueError as exc:
        raise HndescError(f'{path}: not a numeric trajectory file ({exc})') from None
    if fmt == 'kitti':
        if rows.shape[1] != 12:
            raise HndescError(f'{path}: KITTI format needs 12 numbers a line')
        poses = np.tile(np.eye(4), (len(rows), 1, 1))
        poses[:, :3, :4] = rows.reshape(-1, 3, 4)
        return None, poses
    if fmt == 'tum':
        if rows.shape[1] != 8:
            raise HndescError(f'{path}: TUM format needs 8 numbers a line')
        poses = np.tile(np.eye(4), (len(rows), 1, 1))
        for i, r in enumerate(rows):
            poses[i, :3, :3] = from_quat(r[4:8])
            poses[i, :3, 3] = r[1:4]
        return rows[:, 0], poses
    raise HndescError(f'unknown trajectory format {fmt!r} (kitti or tum)')


def associate(stamps_a: np.ndarray, stamps_b: np.ndarray, max_diff: float = 0.01):
    """Nearest-stamp association -> (indices into a, indices into b)."""
    ia, ib = [], []
    for i, s in enumerate(stamps_a):
        j = int(np.argmin(np.abs(stamps_b - s)))
        if abs(stamps_b[j] - s) <= max_diff:
            ia.append(i)
            ib.append(j)
    return np.array(ia, int), np.array(ib, int)
