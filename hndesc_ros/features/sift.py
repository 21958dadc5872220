"""SIFT keypoints and descriptors from OpenCV, with RootSIFT and upright options."""
from __future__ import annotations

from typing import Optional, Tuple

import cv2
import numpy as np

from hndesc_ros.types import Features

_BASE_SIGMA = 1.6
OCTAVE_LAYERS = 3


def root_sift(desc: np.ndarray) -> np.ndarray:
    """RootSIFT (Arandjelovic & Zisserman): L1-normalise, square root -> unit L2. (N, 128)."""
    desc = np.maximum(desc.astype(np.float32), 0)
    desc /= desc.sum(axis=1, keepdims=True) + 1e-7
    return np.sqrt(desc)


def l2_normalise(desc: np.ndarray) -> np.ndarray:
    """Unit L2 rows of (N, D)."""
    desc = desc.astype(np.float32)
    return desc / (np.linalg.norm(desc, axis=1, keepdims=True) + 1e-7)


class Sift:
    """OpenCV SIFT with the project's options.

    Args:
        max_keypoints: keep the strongest N (sorted by response).
        contrast_threshold: DoG peak threshold in image units [0, 1] (VLFeat's
            ``peak_thresh``; the residual paper's evaluations use 0.005). OpenCV divides its
            ``contrastThreshold`` by 2 * nOctaveLayers, so it receives 6 x this value.
        edge_threshold: OpenCV ``edgeThreshold``.
        upright: orientation forced to 0 before describing.
        root: RootSIFT instead of L2-normalised SIFT.
    """

    def __init__(self, max_keypoints: int = 2000, contrast_threshold: float = 0.005,
                 edge_threshold: float = 10.0, upright: bool = False, root: bool = True):
        self.max_keypoints = max_keypoints
        self.upright, self.root = upright, root
        self.sift = cv2.SIFT_create(nfeatures=0, nOctaveLayers=OCTAVE_LAYERS,
                                    contrastThreshold=2 * OCTAVE_LAYERS * contrast_threshold,
                                    edgeThreshold=edge_threshold)

    def detect(self, gray: np.ndarray, mask: Optional[np.ndarray] = None) -> list:
        """Strongest ``max_keypoints`` cv2.KeyPoints of a (H, W) uint8 image, by response."""
        kps = self.sift.detect(gray, mask)
        kps = sorted(kps, key=lambda k: -k.response)
        if self.upright:
            seen, unique = set(), []
            for k in kps:  # orientations duplicate locations; upright keeps one
                key = (round(k.pt[0], 2), round(k.pt[1], 2), round(k.size, 2))
                if key not in seen:
                    seen.add(key)
                    k.angle = 0.0
                    unique.append(k)
            kps = unique
        return kps[:self.max_keypoints]

    def describe(self, gray: np.ndarray, kps: list) -> Tuple[list, np.ndarray]:
        """Descriptors (N, 128) unit rows for cv2.KeyPoints; returns (kept keypoints, desc)."""
        if not kps:
            return [], np.zeros((0, 128), np.float32)
        for i, k in enumerate(kps):
            k.class_id = i
        kps2, desc = self.sift.compute(gray, kps)
        if desc is None:
            return [], np.zeros((0, 128), np.float32)
        return list(kps2), (root_sift(desc) if self.root else l2_normalise(desc))

    def __call__(self, gray: np.ndarray) -> Features:
        """Detect and describe -> Features (descriptors 128-D, SIFT or RootSIFT)."""
        kps, desc = self.describe(gray, self.detect(gray))
        return keypoints_to_features(kps, desc, gray.shape)

    def describe_at(self, gray: np.ndarray, xy: np.ndarray, sizes: np.ndarray,
                    angles: np.ndarray) -> np.ndarray:
        """SIFT at given (N, 2) locations, sizes (px) and angles (deg) -> (N, 128), same order.

        Used for warped keypoints in training and for learned keypoints. The OpenCV pyramid
        level is derived from the size, so a scaled keypoint is described at its own scale.
        """
        kps = [cv2.KeyPoint(float(x), float(y), float(max(s, 1.6)), float(a % 360), 1.0,
                            _octave_for_size(max(s, 1.6)), i)
               for i, ((x, y), s, a) in enumerate(zip(xy, sizes, angles))]
        kept, desc = self.describe(gray, kps)
        out = np.zeros((len(xy), 128), np.float32)
        ids = np.array([k.class_id for k in kept], np.int64)
        if len(ids):
            out[ids] = desc
        return out


def _octave_for_size(size: float) -> int:
    """OpenCV's packed ``octave`` field (octave | layer << 8) for a keypoint of ``size`` px."""
    lg = np.log2(size / _BASE_SIGMA)
    octv = int(np.floor(lg))
    layer = int(np.clip(round(3 * (lg - octv)), 1, 3))
    if layer == 3 and round(3 * (lg - octv)) > 3:
        layer = 3
    return ((octv - 1) & 255) | (layer << 8)


def keypoints_to_features(kps: list, desc: np.ndarray, shape) -> Features:
    """cv2.KeyPoints + (N, D) descriptors -> Features."""
    n = len(kps)
    xy = np.array([k.pt for k in kps], np.float32).reshape(n, 2)
    return Features(xy, desc.astype(np.float32),
                    np.array([k.response for k in kps], np.float32).reshape(n),
                    np.array([k.size for k in kps], np.float32).reshape(n),
                    np.array([k.angle for k in kps], np.float32).reshape(n),
                    (int(shape[1]), int(shape[0])))
