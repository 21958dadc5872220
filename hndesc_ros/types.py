"""Data contracts shared by the library, with documented shapes.

All pixel coordinates are ``(x, y)`` in the input image, origin at the top-left pixel's
centre (OpenCV convention). Poses are 4x4 homogeneous ``T_world_camera`` (camera to world).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from hndesc_ros.errors import CalibrationError


@dataclass
class Features:
    """Keypoints and descriptors of one image.

    Attributes:
        keypoints: (N, 2) float32, x y in pixels.
        descriptors: (N, D) float32, L2-normalised rows.
        scores: (N,) float32 detector response (higher is stronger), sorted descending.
        scales: (N,) float32 keypoint size in pixels (SIFT size; 0 for learned keypoints).
        angles: (N,) float32 orientation in degrees (SIFT angle; 0 when upright/learned).
        image_size: (width, height) of the image the features come from.
    """

    keypoints: np.ndarray
    descriptors: np.ndarray
    scores: np.ndarray
    scales: np.ndarray = None
    angles: np.ndarray = None
    image_size: tuple = (0, 0)

    def __post_init__(self):
        n = len(self.keypoints)
        if self.scales is None:
            self.scales = np.zeros(n, np.float32)
        if self.angles is None:
            self.angles = np.zeros(n, np.float32)
        assert self.keypoints.shape == (n, 2), self.keypoints.shape
        assert self.descriptors.ndim == 2 and len(self.descriptors) == n
        assert self.scores.shape == (n,)

    def __len__(self) -> int:
        return len(self.keypoints)

    def subset(self, idx: np.ndarray) -> 'Features':
        """Return the features at integer or boolean index ``idx``."""
        return Features(self.keypoints[idx], self.descriptors[idx], self.scores[idx],
                        self.scales[idx], self.angles[idx], self.image_size)


@dataclass
class Matches:
    """Correspondences between two feature sets.

    Attributes:
        indices: (K, 2) int64, rows ``(i0, i1)`` into the first and second feature set.
        distances: (K,) float32 descriptor L2 distances.
    """

    indices: np.ndarray
    distances: np.ndarray

    def __len__(self) -> int:
        return len(self.indices)

    @staticmethod
    def empty() -> 'Matches':
        return Matches(np.zeros((0, 2), np.int64), np.zeros(0, np.float32))


@dataclass
class StereoCalib:
    """Rectified stereo (or mono, baseline 0) pinhole calibration.

    Attributes:
        fx, fy, cx, cy: left intrinsics in pixels.
        baseline: metres, positive (right camera at +x of the left one).
        width, height: image size in pixels.
    """

    fx: float
    fy: float
    cx: float
    cy: float
    baseline: float = 0.0
    width: int = 0
    height: int = 0

    def __post_init__(self):
        vals = np.array([self.fx, self.fy, self.cx, self.cy, self.baseline], float)
        if not np.all(np.isfinite(vals)) or self.fx <= 0 or self.fy <= 0:
            raise CalibrationError(
                f'invalid intrinsics fx={self.fx} fy={self.fy} cx={self.cx} cy={self.cy}')
        if self.baseline < 0:
            raise CalibrationError(f'baseline must be >= 0, got {self.baseline}')

    @property
    def K(self) -> np.ndarray:
        """(3, 3) float64 intrinsic matrix."""
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1.0]])

    @staticmethod
    def from_projections(P0: np.ndarray, P1: Optional[np.ndarray] = None, width: int = 0,
                         height: int = 0) -> 'StereoCalib':
        """From rectified 3x4 projection matrices (KITTI / CameraInfo.P); baseline from P1."""
        P0 = np.asarray(P0, float).reshape(3, 4)
        baseline = 0.0
        if P1 is not None:
            P1 = np.asarray(P1, float).reshape(3, 4)
            baseline = -(P1[0, 3] - P0[0, 3]) / P1[0, 0]
        return StereoCalib(P0[0, 0], P0[1, 1], P0[0, 2], P0[1, 2], baseline, width, height)


@dataclass
class StereoFrame:
    """One synchronised stereo pair (right may be None in mono mode).

    Attributes:
        left, right: (H, W) uint8 rectified grayscale images.
        stamp: seconds.
        index: frame number in the sequence.
    """

    left: np.ndarray
    right: Optional[np.ndarray]
    stamp: float = 0.0
    index: int = 0


@dataclass
class Pose:
    """A stamped camera pose ``T_world_camera`` (4x4 float64)."""

    T: np.ndarray = field(default_factory=lambda: np.eye(4))
    stamp: float = 0.0

    @property
    def t(self) -> np.ndarray:
        return self.T[:3, 3]

    @property
    def R(self) -> np.ndarray:
        return self.T[:3, :3]


def make_T(R: np.ndarray, t) -> np.ndarray:
    """4x4 homogeneous transform from a (3, 3) rotation and a (3,) translation."""
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, np.asarray(t, float).ravel()
    return T


def to_quat(R: np.ndarray) -> np.ndarray:
    """3x3 rotation -> (x, y, z, w) unit quaternion."""
    m = R
    tr = np.trace(m)
    if tr > 0:
        s = np.sqrt(tr + 1.0) * 2
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, s / 4]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2]) * 2
        q = [s / 4, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s]
    elif m[1, 1] > m[2, 2]:
        s = np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2]) * 2
        q = [(m[0, 1] + m[1, 0]) / s, s / 4, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s]
    else:
        s = np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1]) * 2
        q = [(m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, s / 4, (m[1, 0] - m[0, 1]) / s]
    q = np.array(q)
    return q / np.linalg.norm(q)


def from_quat(q: Sequence[float]) -> np.ndarray:
    """(x, y, z, w) -> 3x3 rotation."""
    x, y, z, w = np.asarray(q, float) / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
