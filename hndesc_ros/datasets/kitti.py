"""KITTI odometry layout: ``sequences/NN/image_0|1`` (gray) or ``image_2|3`` (colour),
``calib.txt`` (P0..P3), ``times.txt``, and ``poses/NN.txt`` beside ``sequences/``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from hndesc_ros.datasets.poses import read_trajectory, write_kitti
from hndesc_ros.errors import HndescError
from hndesc_ros.features.image import read_image
from hndesc_ros.types import StereoCalib, StereoFrame

KITTI_DT = 0.1  # s, 10 Hz when times.txt is absent


def read_calib(path: str | Path) -> dict:
    """``calib.txt`` -> {'P0': (3, 4), ...}."""
    out = {}
    for line in Path(path).read_text().splitlines():
        if ':' in line:
            key, vals = line.split(':', 1)
            nums = vals.split()
            if len(nums) == 12:
                out[key.strip()] = np.array(nums, float).reshape(3, 4)
    return out


def write_sequence_files(root: str | Path, name: str, calib: StereoCalib, times: np.ndarray,
                         gt_relative: np.ndarray) -> Path:
    """The files of the KITTI sequence ``root/sequences/NAME`` other than its images:
    ``calib.txt`` (P0 and P1 of the rectified pair ``calib``), ``times.txt`` ((N,) seconds)
    and the ground truth ``root/poses/NAME.txt`` ((N, 4, 4), the first camera's frame as the
    world). Returns the sequence folder."""
    seq = Path(root) / 'sequences' / name
    seq.mkdir(parents=True, exist_ok=True)
    c = calib
    P0 = [c.fx, 0, c.cx, 0, 0, c.fy, c.cy, 0, 0, 0, 1, 0]
    P1 = [c.fx, 0, c.cx, -c.fx * c.baseline, 0, c.fy, c.cy, 0, 0, 0, 1, 0]
    (seq / 'calib.txt').write_text(f'P0: {" ".join(map(str, P0))}\nP1: {" ".join(map(str, P1))}\n')
    np.savetxt(seq / 'times.txt', times, fmt='%.6f')
    write_kitti(Path(root) / 'poses' / f'{name}.txt', gt_relative)
    return seq


class KittiSequence:
    """One KITTI odometry sequence, optionally a sub-range of frames.

    Args:
        seq_dir: ``.../sequences/NN``.
        first, count: frame range (count None = to the end).
        color: use image_2/image_3 (P2/P3) instead of image_0/image_1.
        poses: ground-truth file; default ``seq_dir/../../poses/NN.txt`` if it exists.
        mono: left camera only.
    """

    def __init__(self, seq_dir: str | Path, first: int = 0, count: Optional[int] = None,
                 color: bool = False, poses: Optional[str | Path] = None, mono: bool = False):
        self.dir = Path(seq_dir)
        if not self.dir.is_dir():
            raise HndescError(f'KITTI sequence folder not found: {self.dir}')
        calib_path = self.dir / 'calib.txt'
        if not calib_path.is_file():
            raise HndescError(f'{calib_path}: missing')
        self.P = read_calib(calib_path)
        left, right = ('image_2', 'image_3') if color else ('image_0', 'image_1')
        pl, pr = ('P2', 'P3') if color else ('P0', 'P1')
        self.left_dir, self.right_dir = self.dir / left, self.dir / right
        self.mono = mono or not self.right_dir.is_dir()
        files = sorted(self.left_dir.glob('*.png'))
        if not files:
            raise HndescError(f'no images in {self.left_dir}')
        stop = len(files) if count is None else min(len(files), first + count)
        if first >= stop:
            raise HndescError(f'frame range {first}..{stop} is empty ({len(files)} frames)')
        self.indices = list(range(first, stop))
        self.names = [files[i].name for i in self.indices]
        first_img = read_image(files[first], gray=True)
        h, w = first_img.shape
        if pl not in self.P:
            raise HndescError(f'{calib_path}: no {pl}')
        self.calib = StereoCalib.from_projections(self.P[pl], None if self.mono else self.P[pr],
                                                  w, h)
        tfile = self.dir / 'times.txt'
        all_times = (np.loadtxt(tfile, ndmin=1) if tfile.is_file()
                     else np.arange(len(files)) * KITTI_DT)
        self.times = np.asarray(all_times[first:stop], float)
        gt_path = Path(poses) if poses else self.dir.parent.parent / 'poses' / \
            f'{self.dir.name}.txt'
        self.gt_path = gt_path if gt_path.is_file() else None
        self.gt = None
        if self.gt_path is not None:
            _, allp = read_trajectory(self.gt_path, 'kitti')
            if len(allp) >= stop:
                self.gt = allp[first:stop]

    def __len__(self) -> int:
        return len(self.indices)

    def gt_relative(self) -> Optional[np.ndarray]:
        """Ground truth expressed in the first selected frame's camera frame, (N, 4, 4)."""
        if self.gt is None:
            return None
        return np.linalg.inv(self.gt[0]) @ self.gt

    def frame(self, k: int) -> StereoFrame:
        """The k-th selected frame (0-based within the range)."""
        name = self.names[k]
        left = read_image(self.left_dir / name, gray=True)
        right = None if self.mono else read_image(self.right_dir / name, gray=True)
        return StereoFrame(left, right, float(self.times[k]), self.indices[k])

    def __iter__(self) -> Iterator[StereoFrame]:
        for k in range(len(self)):
            yield self.frame(k)
