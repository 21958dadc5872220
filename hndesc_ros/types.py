"""Data contracts shared by the library, with documented shapes.

All pixel coordinates are ``(x, y)`` in the input image, origin at the top-left pixel's
centre (OpenCV convention). Poses are 4x4 homogeneous ``T_world_camera`` (camera to world).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional

import numpy as np

from hndesc_ros.errors import CalibrationError

# the largest disparity offset (px) a rectification is taken to leave: the back end's estimate
# is bounded by it, and the front end refuses a value beyond it (backend/disparity_offset)
MAX_DISPARITY_OFFSET_PX = 3.0


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


# Observations.scores of observations that no detector made (KLT followed them). In a pair
# blurred against its noise (features.max_noise) they are marked apart: block matching of
# noisy images at a pixel no keypoint marks gives a right u that the bundle adjustment can use
# (beside the point's other observations) but that would move the disparity offset (on 20
# dark copies of KITTI 06, offset about 0, it moved on 10 with them and on 2 without)
SCORE_FOLLOWED = 0.0
SCORE_FOLLOWED_NOISY = -1.0


@dataclass
class Observations:
    """Tracked keypoints of one (stereo) frame: what the front end hands to the back end.

    Attributes:
        stamp: seconds; index: frame number.
        track_ids: (M,) int64 persistent ids: the local-map landmark a keypoint belongs to
            (a landmark keeps its id for as long as the map holds it).
        uv: (M, 2) float32 left pixel coordinates.
        u_right: (M,) float32 right-image u (NaN when the point has no stereo match).
        scores: (M,) float32 keypoint scores (detector response, > 0).
            :data:`SCORE_FOLLOWED` (0): no detector made the observation, KLT followed it from
            an earlier frame; :data:`SCORE_FOLLOWED_NOISY` (-1): the same in a pair blurred
            against its noise, whose right u the disparity-offset estimate leaves out.
        timings: milliseconds per stage.
        noise: (M,) float32 each keypoint's localisation noise in units of
            ``vo.pixel_sigma`` (>= 1; 1 at the detector's finest scales, more for a coarse
            one: see :func:`~hndesc_ros.vo.tracker.keypoint_noise`). None: all 1; below 1
            or NaN (e.g. a publisher's zeros) reads as 1.
    """

    stamp: float
    index: int
    track_ids: np.ndarray
    uv: np.ndarray
    u_right: np.ndarray
    scores: np.ndarray
    timings: Dict[str, float] = field(default_factory=dict)
    noise: Optional[np.ndarray] = None

    def __post_init__(self):
        if self.noise is None:
            self.noise = np.ones(len(self.track_ids), np.float32)
        else:  # a copy: never more precise than the pixel sigma
            noise = np.array(self.noise, np.float32)
            noise[~(noise >= 1.0)] = 1.0
            self.noise = noise
        assert self.noise.shape == (len(self.track_ids),), self.noise.shape

    def __len__(self) -> int:
        return len(self.track_ids)

    def subset(self, mask: np.ndarray) -> 'Observations':
        """The observations where the (M,) bool ``mask`` is True (same stamp and timings)."""
        return Observations(self.stamp, self.index, self.track_ids[mask], self.uv[mask],
                            self.u_right[mask], self.scores[mask], self.timings,
                            self.noise[mask])


@dataclass
class FrameResult:
    """What the VO reports for one frame.

    Attributes:
        index, stamp: frame number and seconds.
        T_world_cam: (4, 4) float64 camera pose, world = first camera frame.
        tracked: pose from PnP (False: predicted after tracking loss).
        keyframe: the frame was handed to the mapper.
        inliers: PnP inliers; observations: tracked keypoints in the frame.
        timings: milliseconds per stage.
    """

    index: int
    stamp: float
    T_world_cam: np.ndarray
    tracked: bool
    keyframe: bool
    inliers: int
    observations: int
    timings: Dict[str, float] = field(default_factory=dict)
