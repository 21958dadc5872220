"""A synthetic rectified stereo sequence with exact ground truth (for demos on a fresh machine
and for tests that need an exact answer).

The scene is a textured corridor (floor, ceiling, two walls, an end wall) with procedural
multi-scale textures; each frame is ray-cast for the left and right cameras of a KITTI-like rig
moving forward with a gentle yaw. Same interface as KittiSequence.
"""
from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

from hndesc_ros.datasets.kitti import write_sequence_files
from hndesc_ros.se3 import make_T
from hndesc_ros.types import StereoCalib, StereoFrame


TEX = 1024           # texture resolution (pixels)
TEX_METRES = 40.0    # texture tile size (m)


def procedural_texture(seed: int, size: int = TEX) -> np.ndarray:
    """(size, size) uint8 texture: blobs, lines and noise at several scales (tileable enough)."""
    rng = np.random.default_rng(seed)
    tex = np.zeros((size, size), np.float32)
    for cells, weight in ((4, 0.35), (16, 0.3), (64, 0.25), (256, 0.1)):
        noise = rng.random((cells, cells)).astype(np.float32)
        tex += weight * cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)
    img = (np.clip(tex, 0, 1) * 200 + 20).astype(np.uint8)
    for _ in range(400):  # sharp corners and blobs give detectors something to find
        c = tuple(int(v) for v in rng.integers(0, size, 2))
        col = int(rng.integers(0, 256))
        if rng.random() < 0.5:
            cv2.circle(img, c, int(rng.integers(3, 14)), col, -1, cv2.LINE_AA)
        else:
            d = rng.integers(4, 20, 2)
            cv2.rectangle(img, c, (c[0] + int(d[0]), c[1] + int(d[1])), col, -1)
    return img


class SyntheticSequence:
    """Ray-cast corridor sequence.

    Args:
        frames: number of stereo frames.
        width, height: image size.
        step: forward motion per frame (m).
        seed: texture seed.
    """

    def __init__(self, frames: int = 30, width: int = 640, height: int = 240,
                 step: float = 0.5, seed: int = 0):
        f = 0.8 * width
        self.calib = StereoCalib(f, f, width / 2 - 0.5, height / 2 - 0.5, 0.54, width, height)
        self.size = (width, height)
        self.times = np.arange(frames) * 0.1
        self.textures = [procedural_texture(seed + i) for i in range(5)]
        self.poses = []
        for k in range(frames):
            yaw = 0.15 * np.sin(k / max(frames - 1, 1) * np.pi)
            R = cv2.Rodrigues(np.array([0.0, yaw, 0.0]))[0]
            self.poses.append(make_T(R, [0.6 * np.sin(k * 0.1), 0.0, step * k]))
        self.poses = np.array(self.poses)
        # planes: (normal axis, offset, in-plane axes, texture index)
        self.planes = [(0, -4.0, (2, 1), 0), (0, 4.0, (2, 1), 1), (1, 1.6, (0, 2), 2),
                       (1, -2.4, (0, 2), 3), (2, 80.0, (0, 1), 4)]

    def __len__(self) -> int:
        return len(self.poses)

    def gt_relative(self) -> np.ndarray:
        return np.linalg.inv(self.poses[0]) @ self.poses

    def render(self, T_world_cam: np.ndarray) -> np.ndarray:
        """(H, W) uint8 image seen by a camera at T_world_cam."""
        w, h = self.size
        c = self.calib
        u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
        rays = np.stack([(u - c.cx) / c.fx, (v - c.cy) / c.fy, np.ones_like(u)], -1)
        d = rays @ T_world_cam[:3, :3].T
        o = T_world_cam[:3, 3]
        best = np.full((h, w), np.inf)
        img = np.zeros((h, w), np.float32)
        for axis, off, (a1, a2), ti in self.planes:
            with np.errstate(divide='ignore', invalid='ignore'):
                t = (off - o[axis]) / d[..., axis]
            hit = (t > 0) & (t < best)
            if not hit.any():
                continue
            p = o + d * t[..., None]
            mx = ((p[..., a1] / TEX_METRES) % 1.0 * TEX).astype(np.float32)
            my = ((p[..., a2] / TEX_METRES) % 1.0 * TEX).astype(np.float32)
            val = cv2.remap(self.textures[ti], mx, my, cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_WRAP).astype(np.float32)
            shade = 1.0 / (1.0 + 0.01 * t)  # mild distance falloff
            img = np.where(hit, val * shade, img)
            best = np.where(hit, t, best)
        return np.clip(img, 0, 255).astype(np.uint8)

    def frame(self, k: int) -> StereoFrame:
        T = self.poses[k]
        right = T @ make_T(np.eye(3), [self.calib.baseline, 0, 0])
        return StereoFrame(self.render(T), self.render(right), float(self.times[k]), k)

    def __iter__(self):
        for k in range(len(self)):
            yield self.frame(k)


def write_kitti_layout(seq: SyntheticSequence, root, name: str = '00',
                       count: Optional[int] = None):
    """Write the sequence in KITTI odometry layout under ``root`` (sequences/, poses/)."""
    from pathlib import Path
    root = Path(root)
    sd = root / 'sequences' / name
    (sd / 'image_0').mkdir(parents=True, exist_ok=True)
    (sd / 'image_1').mkdir(parents=True, exist_ok=True)
    n = len(seq) if count is None else count
    for k in range(n):
        fr = seq.frame(k)
        cv2.imwrite(str(sd / 'image_0' / f'{k:06d}.png'), fr.left)
        cv2.imwrite(str(sd / 'image_1' / f'{k:06d}.png'), fr.right)
    write_sequence_files(root, name, seq.calib, seq.times[:n], seq.gt_relative()[:n])
    return sd
