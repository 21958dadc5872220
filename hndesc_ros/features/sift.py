"""SIFT keypoints and descriptors from OpenCV, with RootSIFT and upright options."""
from __future__ import annotations

from typing import Optional, Tuple

import cv2
import numpy as np

from hndesc_ros.features.image import budget_scale, resize_by
from hndesc_ros.types import Features

_BASE_SIGMA = 1.6
OPENCV_SHIFT_PX = 0.25  # OpenCV SIFT's keypoint offset (px of the image it ran on)
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
        upsample: keep OpenCV's 2x-upsampled first octave. False runs SIFT on the image
            downsampled 2x, so OpenCV's first octave is the input resolution: about a quarter
            of the cost, without the finest-scale keypoints. Coordinates and sizes are always
            returned in the input image.
        max_pixels: without ``upsample``: SIFT runs on about this many pixels whatever the
            image (the cost is proportional to them), a big image downsampled, a small one at
            up to its full size (OpenCV's upsampled first octave); 0: half size.
        min_pixels: with half size (``max_pixels`` 0): an image whose half has fewer pixels is
            seen at about this many instead (up to its full size); 0: half size whatever the
            image.
    """

    def __init__(self, max_keypoints: int = 2000, contrast_threshold: float = 0.005,
                 edge_threshold: float = 10.0, upright: bool = False, root: bool = True,
                 upsample: bool = True, max_pixels: int = 0, min_pixels: int = 0):
        self.max_keypoints = max_keypoints
        self.upright, self.root, self.upsample = upright, root, upsample
        self.max_pixels, self.min_pixels = max_pixels, min_pixels
        args = dict(nOctaveLayers=OCTAVE_LAYERS, edgeThreshold=edge_threshold,
                    contrastThreshold=2 * OCTAVE_LAYERS * contrast_threshold)
        self.sift = cv2.SIFT_create(nfeatures=0, **args)
        # one pyramid for detection and description, strongest max_keypoints kept by OpenCV
        self.sift_best = cv2.SIFT_create(nfeatures=max_keypoints, **args)

    def working_scale(self, width: int, height: int) -> float:
        """Scale of the image SIFT runs on relative to a ``width`` x ``height`` input: 1 with
        ``upsample``; else the scale of about ``max_pixels`` pixels, at most 1; without that
        budget 0.5, or that of about ``min_pixels`` where half the size has fewer. A camera of
        half KITTI's size is then seen as KITTI is, rather than at a quarter of the pixels:
        there SIFT at half size finds 130 keypoints on 01 where the full camera gives 350, and
        PnP loses frames."""
        if self.upsample:
            return 1.0
        budget = self.max_pixels
        if budget <= 0:
            if 0.25 * width * height >= self.min_pixels:
                return 0.5
            budget = self.min_pixels
        return budget_scale(width, height, budget)

    def _working_image(self, gray: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """The image SIFT runs on and its (2,) x and y scales relative to the input (exact:
        a size rounds to whole pixels)."""
        return resize_by(gray, self.working_scale(gray.shape[1], gray.shape[0]))

    @staticmethod
    def _to_input(kps: list, scale: np.ndarray) -> list:
        """Detected keypoints, in place, into the input image's pixel coordinates: OpenCV's
        are 0.25 px too far right and down (it halves the coordinates of its 2x-upsampled
        first octave without the half-pixel term; a blob drawn at (100, 80) comes back at
        (100.25, 80.25)), then the working image's scale is undone (pixel centres)."""
        sx, sy = float(scale[0]), float(scale[1])
        for k in kps:
            x, y = k.pt[0] - OPENCV_SHIFT_PX, k.pt[1] - OPENCV_SHIFT_PX
            k.pt = ((x + 0.5) / sx - 0.5, (y + 0.5) / sy - 0.5)
            k.size = k.size / sx
        return kps

    def detect(self, gray: np.ndarray, mask: Optional[np.ndarray] = None) -> list:
        """Strongest ``max_keypoints`` cv2.KeyPoints of a (H, W) uint8 image, by response.

        Keypoints of the full-resolution pyramid (``upsample`` does not apply): use this with
        :meth:`describe` on the same image.
        """
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
        """Detect and describe -> Features (descriptors 128-D, SIFT or RootSIFT), strongest
        first. One scale-space pyramid serves both steps (upright needs two passes: OpenCV
        assigns orientations before describing)."""
        work, scale = self._working_image(gray)
        if self.upright:
            kps, desc = self.describe(work, self.detect(work))
        else:
            kps, desc = self.sift_best.detectAndCompute(work, None)
            kps, desc = list(kps), (np.zeros((0, 128), np.float32) if desc is None else desc)
            order = np.argsort([-k.response for k in kps], kind='stable')[:self.max_keypoints]
            kps = [kps[i] for i in order]
            desc = root_sift(desc[order]) if self.root else l2_normalise(desc[order])
        return keypoints_to_features(self._to_input(kps, scale), desc, gray.shape)

    def describe_at(self, gray: np.ndarray, xy: np.ndarray, sizes: np.ndarray,
                    angles: np.ndarray) -> np.ndarray:
        """SIFT at given (N, 2) locations, sizes (px) and angles (deg) -> (N, 128), same order.

        Used for warped keypoints in training and for learned keypoints. The OpenCV pyramid
        level is derived from the size, so a scaled keypoint is described at its own scale.
        """
        gray, scale = self._working_image(gray)
        xy, sizes = (np.asarray(xy) + 0.5) * scale - 0.5, np.asarray(sizes) * scale[0]
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
