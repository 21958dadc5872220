"""Trajectory files: KITTI (12 numbers a line, the top 3x4 of T_world_cam) and TUM
(``stamp tx ty tz qx qy qz qw``). The one reader and writer of pose files in the project."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from hndesc_ros.errors import HndescError
from hndesc_ros.se3 import from_quat, to_quat


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
