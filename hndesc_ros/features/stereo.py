"""Stereo correspondence for left keypoints on a rectified pair: by descriptors (both images
extracted) or by tracking the left keypoints into the right image (KLT, no right extraction)."""
from __future__ import annotations

import cv2
import numpy as np

from hndesc_ros.config import MatchingConfig
from hndesc_ros.features.matching import match_stereo
from hndesc_ros.types import Features


def _in_band(xy: np.ndarray, right_xy: np.ndarray, cfg: MatchingConfig) -> np.ndarray:
    disp = xy[:, 0] - right_xy[:, 0]
    return ((np.abs(right_xy[:, 1] - xy[:, 1]) <= cfg.stereo_max_row_diff)
            & (disp >= cfg.stereo_min_disparity) & (disp <= cfg.stereo_max_disparity))


def stereo_klt(left: np.ndarray, right: np.ndarray, xy: np.ndarray,
               cfg: MatchingConfig) -> np.ndarray:
    """Track (N, 2) left keypoints into the right image (pyramidal Lucas-Kanade).

    A correspondence is kept when the tracker converged, the right point lies in the row band
    and disparity range of ``cfg``, and tracking it back into the left image returns within
    1 px of the keypoint (forward-backward check).

    Args:
        left, right: (H, W) uint8 rectified grayscale images.
        xy: (N, 2) float32 left keypoints.
    Returns:
        (N,) float32 right-image u, NaN where there is no correspondence.
    """
    u_right = np.full(len(xy), np.nan, np.float32)
    if not len(xy):
        return u_right
    p0 = np.ascontiguousarray(xy, np.float32).reshape(-1, 1, 2)
    guess = p0.copy()
    guess[:, 0, 0] -= cfg.stereo_min_disparity  # right points lie to the left
    win = (cfg.klt_window, cfg.klt_window)
    crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 20, 0.03)
    p1, st, _ = cv2.calcOpticalFlowPyrLK(left, right, p0, guess, winSize=win, maxLevel=3,
                                         criteria=crit, flags=cv2.OPTFLOW_USE_INITIAL_FLOW)
    p1 = p1.reshape(-1, 2)
    ok = (st.ravel() == 1) & _in_band(xy, p1, cfg)
    idx = np.nonzero(ok)[0]
    if len(idx):
        # started from the right point itself: a guess at the answer would pass anything
        back, st2, _ = cv2.calcOpticalFlowPyrLK(right, left, p1[idx].reshape(-1, 1, 2), None,
                                                winSize=win, maxLevel=3, criteria=crit)
        err = np.linalg.norm(back.reshape(-1, 2) - xy[idx], axis=1)
        good = (st2.ravel() == 1) & (err < 1.0)
        u_right[idx[good]] = p1[idx[good], 0]
    return u_right


def stereo_descriptors(left: Features, right: Features, cfg: MatchingConfig) -> np.ndarray:
    """Right-image u of each left keypoint from mutual-NN descriptor matching restricted to the
    rectified row band -> (N,) float32, NaN where unmatched."""
    u_right = np.full(len(left), np.nan, np.float32)
    if len(left) and len(right):
        m = match_stereo(left, right, cfg)
        u_right[m.indices[:, 0]] = right.keypoints[m.indices[:, 1], 0]
    return u_right
