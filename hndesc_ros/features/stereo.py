"""Stereo correspondence for left keypoints on a rectified pair: by block matching (no right
features), by descriptors (both images extracted) or by tracking the left keypoints into the
right image (KLT, no right extraction)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import cv2
import numpy as np

from hndesc_ros.config import MatchingConfig
from hndesc_ros.features.extractor import to_network_pixels
from hndesc_ros.features.image import budget_scale, resize_by
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


# OpenCV StereoBM's acceptance tests, in its units: the best block's SAD must beat every other
# disparity's (but its neighbours) by this many percent, and the block's summed prefiltered
# x-gradient must reach this value (flat blocks have no disparity)
BLOCK_UNIQUENESS = 10
BLOCK_TEXTURE = 10
BLOCK_LR_TOLERANCE = 1.0   # px at the working scale: left->right and right->left must agree


def _block_matcher(disparities: int, block: int):
    bm = cv2.StereoBM_create(numDisparities=disparities, blockSize=block)
    bm.setUniquenessRatio(BLOCK_UNIQUENESS)
    bm.setTextureThreshold(BLOCK_TEXTURE)
    return bm


@dataclass
class BlockDisparities:
    """Dense disparities of a pair (:func:`block_disparities`), in StereoBM's units.

    Attributes:
        left: (h, w) int16 disparity x 16 of each left pixel at the working scale (-16: none;
            0: at infinity, below any ``stereo_min_disparity``).
        right: (h, w) int16 the same with the right image as reference.
        scale: (2,) x and y scales of the working images relative to the input.
    """

    left: np.ndarray
    right: np.ndarray
    scale: np.ndarray


def block_disparities(left: np.ndarray, right: np.ndarray,
                      cfg: MatchingConfig) -> Optional[BlockDisparities]:
    """Dense block matching of a rectified pair, both ways (it needs no keypoints, so it runs
    while the left image is extracted).

    Both images are resized to about ``cfg.stereo_pixels`` pixels (a camera of any size is
    matched at about the same cost and with the same block size in scene terms), and OpenCV's
    StereoBM (SAD over ``cfg.block_size`` px blocks, sub-pixel by its parabola, 1/16 px)
    gives the disparity of every pixel with the left image as reference and again with the
    right one (the pair mirrored). Disparities up to ``cfg.stereo_range`` of the image width
    are searched (a multiple of 16 px at the working scale): the nearest depth is then the
    same share of the camera's own fx b / width, whatever its size. StereoBM gives no
    disparity where the whole range could not be searched: left pixels nearer the left edge
    than the range and half a block (their match may lie outside the right image, and a
    truncated search would return the best wrong one), and, with the right image as
    reference, right pixels as near the right edge, so that the check of
    :func:`block_lookup` keeps the band where both searches were complete (about the central
    60 % of KITTI's width). Measured and not kept (README): padding either search to reach
    the edges.

    Args:
        left, right: (H, W) uint8 rectified grayscale images of one size.
        cfg: ``stereo_pixels``, ``block_size`` and ``stereo_range``.
    Returns:
        BlockDisparities, or None for images too small to match.
    """
    s = budget_scale(left.shape[1], left.shape[0], cfg.stereo_pixels)
    (left, scale), (right, _) = resize_by(left, s), resize_by(right, s)
    size = (left.shape[1], left.shape[0])
    block = cfg.block_size
    disparities = 16 * int(np.ceil(cfg.stereo_range * size[0] / 16.0))
    if size[0] <= disparities + block or size[1] <= block:  # StereoBM needs more than a block
        return None
    d_left = _block_matcher(disparities, block).compute(left, right)
    d_right = _block_matcher(disparities, block).compute(
        np.ascontiguousarray(right[:, ::-1]), np.ascontiguousarray(left[:, ::-1]))[:, ::-1]
    return BlockDisparities(d_left, d_right, scale)


def block_lookup(maps: Optional[BlockDisparities], xy: np.ndarray,
                 cfg: MatchingConfig) -> np.ndarray:
    """Right-image u of each (N, 2) left keypoint from :func:`block_disparities`: the
    disparity of its pixel, kept when the right image's disparity at the matched pixel agrees
    within ``BLOCK_LR_TOLERANCE`` (near object edges, where a foreground block takes the
    background's pixels, and on repeated texture the two disagree) and the disparity is in
    ``cfg``'s range (``stereo_min_disparity`` to ``stereo_max_disparity``). Returns (N,)
    float32, NaN where there is no correspondence."""
    u_right = np.full(len(xy), np.nan, np.float32)
    if maps is None or not len(xy):
        return u_right
    hs, ws = maps.left.shape
    working = np.round(to_network_pixels(xy, maps.scale)).astype(np.int64)
    xs, ys = np.clip(working[:, 0], 0, ws - 1), np.clip(working[:, 1], 0, hs - 1)
    d = maps.left[ys, xs].astype(np.float32) / 16.0    # working px; none: -1, infinity: 0
    xr = np.clip(np.round(xs - d).astype(np.int64), 0, ws - 1)
    back = maps.right[ys, xr].astype(np.float32) / 16.0
    full = d / float(maps.scale[0])   # input px
    ok = ((full >= cfg.stereo_min_disparity) & (full <= cfg.stereo_max_disparity)
          & (np.abs(back - d) <= BLOCK_LR_TOLERANCE))
    u_right[ok] = xy[ok, 0] - full[ok]
    return u_right


def stereo_block(left: np.ndarray, right: np.ndarray, xy: np.ndarray,
                 cfg: MatchingConfig) -> np.ndarray:
    """:func:`block_lookup` of :func:`block_disparities`: (N,) float32 right-image u of the
    (N, 2) left keypoints ``xy`` on the (H, W) uint8 pair, NaN where there is none."""
    return block_lookup(block_disparities(left, right, cfg), xy, cfg)


def stereo_descriptors(left: Features, right: Features, cfg: MatchingConfig) -> np.ndarray:
    """Right-image u of each left keypoint from mutual-NN descriptor matching restricted to the
    rectified row band -> (N,) float32, NaN where unmatched."""
    u_right = np.full(len(left), np.nan, np.float32)
    if len(left) and len(right):
        m = match_stereo(left, right, cfg)
        u_right[m.indices[:, 0]] = right.keypoints[m.indices[:, 1], 0]
    return u_right
