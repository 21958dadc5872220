"""Self-supervised training pairs: random homographies + photometric augmentation.

Each sample is one image warped by a random homography into a second view. Positives are SIFT
keypoints of the source warped into the target; SIFT is recomputed at the warped keypoint with
its scale and orientation transformed by the homography's local Jacobian, so ``f`` sees the
handcrafted descriptor of both views.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence

import cv2
import numpy as np
import torch

from hndesc_ros.features.sift import Sift

IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.ppm', '.pgm')
# Evaluation data must never be trained on (HPatches, KITTI 06).
FORBIDDEN = ('hpatches', 'sequences/06', 'kitti_frames/06')


@dataclass
class PairConfig:
    height: int = 240
    width: int = 320
    keypoints: int = 256            # positives per pair (padded, with a validity mask)
    label_keypoints: int = 512      # SIFT teacher points for the detector head
    max_angle: float = 25.0         # deg, in-plane rotation
    min_scale: float = 0.7
    max_scale: float = 1.4
    perspective: float = 0.12       # corner jitter as a fraction of the size
    translation: float = 0.1
    brightness: float = 0.25
    contrast: float = 0.3
    saturation: float = 0.3
    hue: float = 0.05
    gamma: float = 0.3
    noise: float = 0.02
    blur: float = 0.5               # probability of a Gaussian blur
    contrast_threshold: float = 0.005


def check_training_dirs(dirs: Sequence[str | Path]) -> None:
    """Refuse evaluation folders (raises ValueError naming the folder)."""
    for d in dirs:
        text = Path(d).resolve().as_posix().lower() + '/'
        for bad in FORBIDDEN:
            if f'/{bad}/' in text or text.endswith(f'/{bad}/'):
                raise ValueError(f'{d}: evaluation data ({bad}) must not be used for training')


def list_images(dirs: Sequence[str | Path]) -> List[Path]:
    """All images under ``dirs`` (recursive), evaluation folders excluded, sorted."""
    check_training_dirs(dirs)
    out = []
    for d in dirs:
        d = Path(d)
        if not d.exists():
            raise FileNotFoundError(f'training images: {d} does not exist')
        if d.is_file():
            files = [d]
        else:
            files = sorted(p for p in d.rglob('*') if p.suffix.lower() in IMAGE_EXTS)
        for p in files:
            text = p.resolve().as_posix().lower()
            if not any(f'/{bad}/' in text for bad in FORBIDDEN):
                out.append(p)
    return out


def random_homography(rng: np.random.Generator, h: int, w: int, c: PairConfig) -> np.ndarray:
    """A 3x3 homography mapping source pixels to target pixels (centred composition)."""
    centre = np.array([[1, 0, w / 2], [0, 1, h / 2], [0, 0, 1.0]])
    a = math.radians(rng.uniform(-c.max_angle, c.max_angle))
    s = math.exp(rng.uniform(math.log(c.min_scale), math.log(c.max_scale)))
    rs = np.array([[s * math.cos(a), -s * math.sin(a), 0], [s * math.sin(a), s * math.cos(a), 0],
                   [0, 0, 1.0]])
    src = np.float32([[-w / 2, -h / 2], [w / 2, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]])
    dst = src + rng.uniform(-c.perspective, c.perspective, (4, 2)).astype(np.float32) * [w, h]
    persp = cv2.getPerspectiveTransform(src, dst.astype(np.float32))
    t = np.array([[1, 0, rng.uniform(-1, 1) * c.translation * w],
                  [0, 1, rng.uniform(-1, 1) * c.translation * h], [0, 0, 1.0]])
    return centre @ t @ persp @ rs @ np.linalg.inv(centre)


def warp_points(H: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """(N, 2) points through a homography."""
    p = np.c_[xy, np.ones(len(xy))] @ H.T
    return (p[:, :2] / p[:, 2:3]).astype(np.float32)


def warp_scale_angle(H: np.ndarray, xy: np.ndarray, sizes: np.ndarray, angles: np.ndarray):
    """Keypoint sizes and angles (deg) after H, from its local Jacobian."""
    eps = 1.0
    p0 = warp_points(H, xy)
    px = warp_points(H, xy + [eps, 0])
    py = warp_points(H, xy + [0, eps])
    jx, jy = (px - p0) / eps, (py - p0) / eps  # columns of J
    det = np.abs(jx[:, 0] * jy[:, 1] - jx[:, 1] * jy[:, 0])
    th = np.deg2rad(angles)
    # OpenCV SIFT angles are measured with y pointing up: direction (cos, -sin) in pixels
    d = np.stack([np.cos(th), -np.sin(th)], 1)
    dw = jx * d[:, :1] + jy * d[:, 1:]
    new_angles = np.rad2deg(np.arctan2(-dw[:, 1], dw[:, 0])) % 360
    return sizes * np.sqrt(det), new_angles.astype(np.float32)


def photometric(rng: np.random.Generator, img: np.ndarray, c: PairConfig) -> np.ndarray:
    """Random brightness/contrast/saturation/hue/gamma/noise/blur on a uint8 BGR image."""
    x = img.astype(np.float32) / 255.0
    hsv = cv2.cvtColor(x, cv2.COLOR_BGR2HSV)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-c.hue, c.hue) * 360) % 360
    hsv[..., 1] = np.clip(hsv[..., 1] * (1 + rng.uniform(-c.saturation, c.saturation)), 0, 1)
    x = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
    x = x * (1 + rng.uniform(-c.contrast, c.contrast))
    x = x + rng.uniform(-c.brightness, c.brightness)
    x = np.clip(x, 0, 1) ** math.exp(rng.uniform(-c.gamma, c.gamma))
    if rng.random() < c.blur:
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.3, 1.5))
    x = x + rng.normal(0, c.noise * rng.random(), x.shape)
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)


class HomographyPairs(torch.utils.data.Dataset):
    """Dataset of (image A, warped image B, positives, detector labels).

    Items are dicts of tensors: ``image0``/``image1`` (1, H, W) float in [0, 1]; ``kp0``/``kp1``
    (K, 2) positives; ``sift0``/``sift1`` (K, 128) RootSIFT; ``valid`` (K,) bool;
    ``label0``/``label1`` (H/8, W/8) int64 cell labels (0..63 position, 64 = no keypoint).
    Sampling is a pure function of (seed, epoch, index) so a resumed run sees the same data.
    """

    def __init__(self, files: Sequence[Path], cfg: PairConfig, seed: int = 0,
                 length: int | None = None):
        cv2.setNumThreads(1)  # parallelism comes from DataLoader workers
        self.files, self.cfg, self.seed = list(files), cfg, seed
        self.length = length or len(self.files)
        self.epoch = 0
        self.sift = Sift(4096, cfg.contrast_threshold, 10.0, upright=False, root=True)
        self._cache = {}

    def __len__(self) -> int:
        return self.length

    def _load(self, i: int) -> np.ndarray:
        path = self.files[i % len(self.files)]
        if path not in self._cache:
            img = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if img is None:
                raise ValueError(f'{path}: unreadable training image')
            self._cache[path] = img
        return self._cache[path]

    def __getitem__(self, index: int):
        rng = np.random.default_rng([self.seed, self.epoch, index])
        c = self.cfg
        img = self._load(int(rng.integers(len(self.files))) if self.length != len(self.files)
                         else index)
        # random crop of the crop's aspect ratio, resized to (H, W)
        ih, iw = img.shape[:2]
        scale = rng.uniform(0.5, 1.0) * min(ih / c.height, iw / c.width)
        ch, cw = int(c.height * scale), int(c.width * scale)
        y0, x0 = rng.integers(0, ih - ch + 1), rng.integers(0, iw - cw + 1)
        src = cv2.resize(img[y0:y0 + ch, x0:x0 + cw], (c.width, c.height),
                         interpolation=cv2.INTER_AREA)
        H = random_homography(rng, c.height, c.width, c)
        dst = cv2.warpPerspective(src, H, (c.width, c.height), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REFLECT)
        valid_b = cv2.warpPerspective(np.ones((c.height, c.width), np.uint8), H,
                                      (c.width, c.height), flags=cv2.INTER_NEAREST)
        g0 = cv2.cvtColor(photometric(rng, src, c), cv2.COLOR_BGR2GRAY)
        g1 = cv2.cvtColor(photometric(rng, dst, c), cv2.COLOR_BGR2GRAY)
        kps = self.sift.detect(g0)
        xy = np.array([k.pt for k in kps], np.float32).reshape(-1, 2)
        sizes = np.array([k.size for k in kps], np.float32)
        angles = np.array([k.angle for k in kps], np.float32)
        wxy = warp_points(H, xy) if len(xy) else xy
        m = 6  # keep warped points away from the border and the invalid region
        inside = ((wxy[:, 0] >= m) & (wxy[:, 0] < c.width - m) & (wxy[:, 1] >= m)
                  & (wxy[:, 1] < c.height - m))
        if inside.any():
            wi = np.round(wxy[inside]).astype(int)
            ok = valid_b[wi[:, 1], wi[:, 0]] > 0
            inside[np.nonzero(inside)[0][~ok]] = False
        labels0 = _cell_labels(xy[:c.label_keypoints], c.height, c.width)
        lab_in = inside[:c.label_keypoints]
        labels1 = _cell_labels(wxy[:c.label_keypoints][lab_in], c.height, c.width)
        idx = np.nonzero(inside)[0]
        # spread positives: random subset of the valid keypoints
        idx = rng.permutation(idx)[:c.keypoints]
        k = len(idx)
        kp0, kp1 = np.zeros((c.keypoints, 2), np.float32), np.zeros((c.keypoints, 2), np.float32)
        s0, s1 = np.zeros((c.keypoints, 128), np.float32), np.zeros((c.keypoints, 128), np.float32)
        valid = np.zeros(c.keypoints, bool)
        if k:
            kp0[:k], kp1[:k] = xy[idx], wxy[idx]
            ws, wa = warp_scale_angle(H, xy[idx], sizes[idx], angles[idx])
            s0[:k] = self.sift.describe_at(g0, xy[idx], sizes[idx], angles[idx])
            s1[:k] = self.sift.describe_at(g1, wxy[idx], ws, wa)
            valid[:k] = (np.abs(s0[:k]).sum(1) > 0) & (np.abs(s1[:k]).sum(1) > 0)
        return {
            'image0': torch.from_numpy(g0[None].astype(np.float32) / 255.0),
            'image1': torch.from_numpy(g1[None].astype(np.float32) / 255.0),
            'kp0': torch.from_numpy(kp0), 'kp1': torch.from_numpy(kp1),
            'sift0': torch.from_numpy(s0), 'sift1': torch.from_numpy(s1),
            'valid': torch.from_numpy(valid),
            'label0': torch.from_numpy(labels0), 'label1': torch.from_numpy(labels1),
            'H': torch.from_numpy(H.astype(np.float32)),
        }


def _cell_labels(xy: np.ndarray, h: int, w: int) -> np.ndarray:
    """(N, 2) keypoints (strongest first) -> (h/8, w/8) labels: 0..63 position, 64 empty."""
    labels = np.full((h // 8, w // 8), 64, np.int64)
    if len(xy) == 0:
        return labels
    p = np.clip(np.round(xy).astype(int), 0, [w - 1, h - 1])
    for x, y in p[::-1]:  # strongest written last wins
        labels[y // 8, x // 8] = (y % 8) * 8 + (x % 8)
    return labels
