"""Stereo correspondence for left keypoints on a rectified pair: by descriptors (both images
extracted) or by tracking the left keypoints into the right image (KLT, no right extraction)."""
from __future__ import annotations

from typing import Tuple

import cv2
import numpy as np

from hndesc_ros.config import MatchingConfig
from hndesc_ros.features.matching import match_stereo
from hndesc_ros.types import Features


def _in_band(xy: np.ndarray, right_xy: np.ndarray, cfg: MatchingConfig) -> np.ndarray:
    disp = xy[:, 0] - right_xy[:, 0]
    return ((np.abs(right_xy[:, 1] - xy[:, 1]) <= cfg.stereo_max_row_diff)
            & (disp >= cfg.stereo_min_disparity) & (disp <= cfg.stereo_max_disparity))


KLT_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 20, 0.03)


def klt_forward_backward(image0: np.ndarray, image1: np.ndarray, xy0: np.ndarray,
                         guess: np.ndarray, window: int, max_level: int = 3,
                         max_back_px: float = 1.0) -> Tuple[np.ndarray, np.ndarray]:
    """Pyramidal Lucas-Kanade from ``image0`` into ``image1``, checked by tracking back.

    The forward pass starts at ``guess``; the backward pass starts at the forward result itself
    (a guess at its answer would pass anything) and must return within ``max_back_px`` of the
    start.

    Args:
        image0, image1: (H, W) uint8 grayscale images.
        xy0: (N, 2) points in image0; guess: (N, 2) their expected pixels in image1.
        window: KLT patch size (px). max_level: pyramid levels above the image.
    Returns:
        ((N, 2) float32 points in image1, (N,) bool: converged both ways and came back).
    """
    n = len(xy0)
    if not n:
        return np.zeros((0, 2), np.float32), np.zeros(0, bool)
    p0 = np.ascontiguousarray(xy0, np.float32).reshape(-1, 1, 2)
    p1 = np.ascontiguousarray(guess, np.float32).reshape(-1, 1, 2).copy()
    win = (window, window)
    p1, st, _ = cv2.calcOpticalFlowPyrLK(image0, image1, p0, p1, winSize=win,
                                         maxLevel=max_level, criteria=KLT_CRITERIA,
                                         flags=cv2.OPTFLOW_USE_INITIAL_FLOW)
    back, st2, _ = cv2.calcOpticalFlowPyrLK(image1, image0, p1, None, winSize=win,
                                            maxLevel=max_level, criteria=KLT_CRITERIA)
    p1 = p1.reshape(n, 2)
    err = np.linalg.norm(back.reshape(n, 2) - p0.reshape(n, 2), axis=1)
    ok = (st.ravel() == 1) & (st2.ravel() == 1) & (err < max_back_px) & np.isfinite(p1).all(1)
    return p1, ok


def stereo_klt(left: np.ndarray, right: np.ndarray, xy: np.ndarray,
               cfg: MatchingConfig) -> np.ndarray:
    """Track (N, 2) left keypoints into the right image (pyramidal Lucas-Kanade).

    A correspondence is kept when :func:`klt_forward_backward` accepts it (within 1 px) and
    the right point lies in the row band and disparity range of ``cfg``.

    Args:
        left, right: (H, W) uint8 rectified grayscale images.
        xy: (N, 2) float32 left keypoints.
    Returns:
        (N,) float32 right-image u, NaN where there is no correspondence.
    """
    u_right = np.full(len(xy), np.nan, np.float32)
    if not len(xy):
        return u_right
    guess = np.array(xy, np.float32).reshape(-1, 2)
    guess[:, 0] -= cfg.stereo_min_disparity  # right points lie to the left
    p1, ok = klt_forward_backward(left, right, xy, guess, cfg.klt_window)
    ok &= _in_band(xy, p1, cfg)
    u_right[ok] = p1[ok, 0]
    return u_right


def stereo_descriptors(left: Features, right: Features, cfg: MatchingConfig) -> np.ndarray:
    """Right-image u of each left keypoint from mutual-NN descriptor matching restricted to the
    rectified row band -> (N,) float32, NaN where unmatched."""
    u_right = np.full(len(left), np.nan, np.float32)
    if len(left) and len(right):
        m = match_stereo(left, right, cfg)
        u_right[m.indices[:, 0]] = right.keypoints[m.indices[:, 1], 0]
    return u_right
