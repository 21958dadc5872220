"""Trajectory files: KITTI (12 numbers a line, the top 3x4 of T_world_cam) and TUM
(``stamp tx ty tz qx qy qz qw``). The one reader and writer of pose files in the project."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from hndesc_ros.errors import HndescError
from hndesc_ros.se3 import from_quat, to_quat


def pose_line(T: np.ndarray, fmt: str = 'kitti', stamp: Optional[float] = None) -> str:
    """One line of a trajectory file for the (4, 4) pose ``T`` (TUM needs ``stamp``, s)."""
    if fmt == 'kitti':
        return ' '.join(f'{v:.9e}' for v in T[:3, :4].reshape(-1)) + '\n'
    if fmt == 'tum':
        if stamp is None:
            raise HndescError('TUM trajectory lines need a stamp')
        return ' '.join(f'{v:.9f}' for v in np.r_[stamp, T[:3, 3], to_quat(T[:3, :3])]) + '\n'
    raise HndescError(f'unknown trajectory format {fmt!r} (kitti or tum)')


class PoseFileWriter:
    """Writes a trajectory file a pose at a time, flushed after each: whatever ends the writer
    (a signal, an exception, ``kill -9``), the file holds every pose written before, whole.

    Use as a context manager: ``with PoseFileWriter(path, 'tum') as w: w.write(T, stamp)``.
    """

    def __init__(self, path: str | Path, fmt: str = 'kitti') -> None:
        pose_line(np.eye(4), fmt, 0.0)  # validates fmt before the file is created
        self.path, self.fmt, self.count = Path(path), fmt, 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, 'w')

    def write(self, T: np.ndarray, stamp: Optional[float] = None) -> None:
        self._file.write(pose_line(T, self.fmt, stamp))
        self._file.flush()
        self.count += 1

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> 'PoseFileWriter':
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_kitti(path: str | Path, poses: np.ndarray) -> Path:
    """KITTI format: 12 numbers a line (the top 3x4 of each pose)."""
    with PoseFileWriter(path, 'kitti') as w:
        for T in poses:
            w.write(T)
    return Path(path)


def write_tum(path: str | Path, stamps: np.ndarray, poses: np.ndarray) -> Path:
    """TUM format: ``stamp tx ty tz qx qy qz qw`` a line."""
    with PoseFileWriter(path, 'tum') as w:
        for stamp, T in zip(stamps, poses):
            w.write(T, float(stamp))
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
