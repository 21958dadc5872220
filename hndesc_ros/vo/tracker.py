"""Front end: stereo matching and temporal matching with persistent track ids.

Per frame: left/right Features -> stereo matches on the rectified pair (row band, disparity
range, mutual NN) -> temporal matches to the previous left image (mutual NN + ratio, verified by
a fundamental-matrix RANSAC) -> :class:`Observations`, one row per tracked left keypoint.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, Optional

import cv2
import numpy as np

from hndesc_ros.config import MatchingConfig
from hndesc_ros.features.matching import match_numpy, match_stereo
from hndesc_ros.types import Features


@dataclass
class Observations:
    """Tracked keypoints of one (stereo) frame.

    Attributes:
        stamp: seconds; index: frame number.
        track_ids: (M,) int64 persistent ids (a track keeps its id across frames).
        uv: (M, 2) float32 left pixel coordinates.
        u_right: (M,) float32 right-image u (NaN when the point has no stereo match).
        scores: (M,) float32 keypoint scores.
        timings: milliseconds per stage.
    """

    stamp: float
    index: int
    track_ids: np.ndarray
    uv: np.ndarray
    u_right: np.ndarray
    scores: np.ndarray
    timings: Dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.track_ids)


class StereoTracker:
    """Assigns persistent track ids to left keypoints across frames.

    A new track starts at every left keypoint with a stereo match that does not continue an
    existing track; a keypoint without stereo is kept only while it continues a track. In mono
    mode (``right`` None) every keypoint that does not continue a track starts one.
    """

    def __init__(self, matching: Optional[MatchingConfig] = None, f_ransac_px: float = 1.0):
        self.cfg = matching or MatchingConfig()
        self.f_ransac_px = f_ransac_px
        self.prev: Optional[Features] = None
        self.prev_ids: Optional[np.ndarray] = None
        self.next_id = 0

    def track(self, left: Features, right: Optional[Features], stamp: float = 0.0,
              index: int = 0) -> Observations:
        """Stereo + temporal matching for one frame -> Observations."""
        t0 = time.perf_counter()
        n = len(left)
        u_right = np.full(n, np.nan, np.float32)
        if right is not None and n and len(right):
            sm = match_stereo(left, right, self.cfg)
            u_right[sm.indices[:, 0]] = right.keypoints[sm.indices[:, 1], 0]
        t1 = time.perf_counter()
        ids = np.full(n, -1, np.int64)
        if self.prev is not None and n and len(self.prev):
            tm = match_numpy(self.prev.descriptors, left.descriptors, self.cfg.ratio,
                             self.cfg.max_distance)
            tm_idx = tm.indices
            if len(tm_idx) >= 8:
                p0 = self.prev.keypoints[tm_idx[:, 0]]
                p1 = left.keypoints[tm_idx[:, 1]]
                _, mask = cv2.findFundamentalMat(p0, p1, cv2.FM_RANSAC, self.f_ransac_px, 0.999)
                if mask is not None:
                    tm_idx = tm_idx[mask.ravel() > 0]
            prev_ids = self.prev_ids[tm_idx[:, 0]]
            has = prev_ids >= 0
            ids[tm_idx[has, 1]] = prev_ids[has]
        new = (ids < 0) & (np.isfinite(u_right) if right is not None else True)
        ids[new] = np.arange(self.next_id, self.next_id + int(new.sum()))
        self.next_id += int(new.sum())
        t2 = time.perf_counter()
        if n:  # a blank frame keeps the previous one as the reference for the next frame
            self.prev, self.prev_ids = left, ids
        keep = ids >= 0
        return Observations(stamp, index, ids[keep], left.keypoints[keep], u_right[keep],
                            left.scores[keep],
                            {'stereo_matching': (t1 - t0) * 1e3,
                             'temporal_matching': (t2 - t1) * 1e3})
