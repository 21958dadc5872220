"""Mutual nearest-neighbour matching with ratio test (numpy and torch), stereo row constraint,
and RANSAC geometric verification of matches.

torch is imported only by :func:`match_torch` (the CPU runtime runs without it).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Tuple

import cv2
import numpy as np

from hndesc_ros.errors import HndescError
from hndesc_ros.types import Matches

LOG = logging.getLogger(__name__)

if TYPE_CHECKING:
    import torch


def pairwise_distances(d0: np.ndarray, d1: np.ndarray) -> np.ndarray:
    """(N0, D), (N1, D) -> (N0, N1) float32 Euclidean distances."""
    sq = (np.sum(d0 * d0, 1)[:, None] + np.sum(d1 * d1, 1)[None] - 2.0 * d0 @ d1.T)
    return np.sqrt(np.maximum(sq, 0.0)).astype(np.float32)


def match_from_distances(dist: np.ndarray, ratio: float = 1.0,
                         max_distance: float = np.inf) -> Matches:
    """Mutual NN on a (N0, N1) distance matrix (inf = forbidden pair), then ratio test."""
    n0, n1 = dist.shape
    if n0 == 0 or n1 == 0:
        return Matches.empty()
    nn01 = np.argmin(dist, axis=1)
    nn10 = np.argmin(dist, axis=0)
    i0 = np.arange(n0)
    best = dist[i0, nn01]
    keep = (nn10[nn01] == i0) & np.isfinite(best) & (best <= max_distance)
    if ratio < 1.0 and n1 > 1:
        second = np.partition(dist, 1, axis=1)[:, 1]
        keep &= best <= ratio * second
    idx = np.stack([i0[keep], nn01[keep]], 1).astype(np.int64)
    return Matches(idx, best[keep].astype(np.float32))


def match_numpy(d0: np.ndarray, d1: np.ndarray, ratio: float = 1.0,
                max_distance: float = np.inf, mask: Optional[np.ndarray] = None) -> Matches:
    """Mutual NN + optional ratio test between (N0, D) and (N1, D) descriptors.

    Args:
        mask: optional (N0, N1) bool, pairs allowed to match (e.g. the stereo row band).
    Returns:
        Matches with (K, 2) indices and (K,) distances; empty if either side is empty.
    """
    if len(d0) == 0 or len(d1) == 0:
        return Matches.empty()
    dist = pairwise_distances(d0, d1)
    if mask is not None:
        dist[~mask] = np.inf
    return match_from_distances(dist, ratio, max_distance)


def match_torch(d0: torch.Tensor, d1: torch.Tensor, ratio: float = 1.0,
                max_distance: float = float('inf'),
                mask: Optional[torch.Tensor] = None):
    """Torch twin of :func:`match_numpy` (runs on the tensors' device).

    Returns:
        (indices (K, 2) int64 tensor, distances (K,) float tensor).
    """
    import torch
    dev = d0.device
    if len(d0) == 0 or len(d1) == 0:
        return torch.zeros(0, 2, dtype=torch.long, device=dev), torch.zeros(0, device=dev)
    dist = torch.cdist(d0.float()[None], d1.float()[None])[0]
    if mask is not None:
        dist = dist.masked_fill(~mask, float('inf'))
    best, nn01 = dist.min(dim=1)
    nn10 = dist.argmin(dim=0)
    i0 = torch.arange(len(d0), device=dev)
    keep = (nn10[nn01] == i0) & torch.isfinite(best) & (best <= max_distance)
    if ratio < 1.0 and dist.shape[1] > 1:
        two = dist.topk(2, dim=1, largest=False).values
        keep &= best <= ratio * two[:, 1]
    return torch.stack([i0[keep], nn01[keep]], 1), best[keep]


def stereo_mask(kp_left: np.ndarray, kp_right: np.ndarray, max_row_diff: float = 1.5,
                min_disparity: float = 0.5, max_disparity: float = 250.0) -> np.ndarray:
    """(N0, N1) bool: rectified stereo candidates (same row band, disparity in range).

    Works on numpy arrays and on torch tensors alike (the GPU front end uses it on the device).
    """
    dy = abs(kp_left[:, None, 1] - kp_right[None, :, 1])
    disp = kp_left[:, None, 0] - kp_right[None, :, 0]
    return (dy <= max_row_diff) & (disp >= min_disparity) & (disp <= max_disparity)


def expand_ranges(lo: np.ndarray, hi: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Half-open ranges [lo[i], hi[i]) -> (owner i, position) for every position in them,
    vectorised: ([0, 2), [5, 6)) -> owners [0, 0, 1], positions [0, 1, 5]."""
    counts = np.maximum(hi - lo, 0)
    owner = np.repeat(np.arange(len(lo)), counts)
    start = np.repeat(lo - (np.cumsum(counts) - counts), counts)
    return owner, np.arange(len(owner)) + start


def stereo_candidates(kp_left: np.ndarray, kp_right: np.ndarray, max_row_diff: float = 1.5,
                      min_disparity: float = 0.5, max_disparity: float = 250.0
                      ) -> Tuple[np.ndarray, np.ndarray]:
    """The pairs :func:`stereo_mask` allows, listed instead of masked: (K,) left and (K,) right
    indices. The right keypoints are sorted by row, so each left keypoint meets only those of
    its row band (about 1 % of them on KITTI) and the cost grows with K, not N0 x N1."""
    if not len(kp_left) or not len(kp_right):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    order = np.argsort(kp_right[:, 1], kind='stable')
    rows = kp_right[order, 1]
    margin = max_row_diff + 1e-3  # a little wider: the exact band test below decides
    lo = np.searchsorted(rows, kp_left[:, 1] - margin, 'left')
    hi = np.searchsorted(rows, kp_left[:, 1] + margin, 'right')
    i0, pos = expand_ranges(lo, hi)
    i1 = order[pos]
    disp = kp_left[i0, 0] - kp_right[i1, 0]
    ok = ((disp >= min_disparity) & (disp <= max_disparity)
          & (np.abs(kp_left[i0, 1] - kp_right[i1, 1]) <= max_row_diff))  # as stereo_mask rounds
    return i0[ok].astype(np.int64), i1[ok].astype(np.int64)


def nearest_in_groups(groups: np.ndarray, dist: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """For (K,) candidates sorted by group, then by distance: (K,) bool marking each group's
    nearest candidate, and (K,) the distance of the next candidate of the same group (inf if
    none): on the marked rows, the second-nearest distance of the ratio test."""
    first = np.r_[True, groups[1:] != groups[:-1]]
    second = np.where(np.r_[groups[1:] == groups[:-1], False], np.r_[dist[1:], np.inf], np.inf)
    return first, second


def match_candidates(d0: np.ndarray, d1: np.ndarray, i0: np.ndarray, i1: np.ndarray,
                     ratio: float = 1.0, max_distance: float = np.inf) -> Matches:
    """:func:`match_from_distances` over a list of allowed pairs instead of a dense matrix:
    mutual NN among the candidates, the ratio against a left point's second candidate.

    Args:
        d0, d1: (N0, D), (N1, D) descriptors; i0, i1: (K,) candidate pairs (no duplicates).
    """
    if not len(i0):
        return Matches.empty()
    sim = np.einsum('ij,ij->i', d0[i0], d1[i1])
    sq = np.einsum('ij,ij->i', d0[i0], d0[i0]) + np.einsum('ij,ij->i', d1[i1], d1[i1])
    dist = np.sqrt(np.maximum(sq - 2.0 * sim, 0.0)).astype(np.float32)
    by0 = np.lexsort((i1, dist, i0))       # per left point, nearest first (ties: lower index)
    a0, a1, ad = i0[by0], i1[by0], dist[by0]
    first, second = nearest_in_groups(a0, ad)
    best0, best1, best_d, second = a0[first], a1[first], ad[first], second[first]
    by1 = np.lexsort((i0, dist, i1))       # per right point, its nearest left point
    b1 = i1[by1]
    nn10 = np.full(len(d1), -1, np.int64)
    head = np.r_[True, b1[1:] != b1[:-1]]
    nn10[b1[head]] = i0[by1][head]
    keep = (nn10[best1] == best0) & (best_d <= max_distance)
    if ratio < 1.0:
        keep &= best_d <= ratio * second
    return Matches(np.stack([best0[keep], best1[keep]], 1).astype(np.int64),
                   best_d[keep].astype(np.float32))


def match_stereo(left, right, cfg) -> Matches:
    """Mutual NN between left/right Features restricted by the stereo row constraint (the
    candidates of :func:`stereo_candidates`; the same matches as :func:`match_numpy` with
    :func:`stereo_mask`, without the dense distance matrix)."""
    i0, i1 = stereo_candidates(left.keypoints, right.keypoints, cfg.stereo_max_row_diff,
                               cfg.stereo_min_disparity, cfg.stereo_max_disparity)
    return match_candidates(left.descriptors, right.descriptors, i0, i1, cfg.ratio,
                            cfg.max_distance)


GEOMETRIES = ('fundamental', 'homography')
MIN_MATCHES = {'fundamental': 8, 'homography': 4}


@dataclass
class Verification:
    """Result of :func:`verify_matches`.

    Attributes:
        inliers: (K,) bool, one per match.
        model: (3, 3) fundamental matrix or homography; None when RANSAC found none.
        geometry: 'fundamental' or 'homography'.
        threshold: RANSAC inlier threshold (px).
    """

    inliers: np.ndarray
    model: Optional[np.ndarray]
    geometry: str
    threshold: float

    @property
    def counts(self) -> Tuple[int, int]:
        """(inliers, outliers)."""
        n_in = int(self.inliers.sum())
        return n_in, len(self.inliers) - n_in


def verify_matches(kp0: np.ndarray, kp1: np.ndarray, matches: np.ndarray,
                   geometry: str = 'fundamental', threshold: float = 3.0,
                   confidence: float = 0.999, max_iters: int = 5000) -> Verification:
    """RANSAC geometric verification of matches (OpenCV).

    Args:
        kp0, kp1: (N0, 2), (N1, 2) keypoints (x, y) in pixels.
        matches: (K, 2) indices into kp0 and kp1.
        geometry: 'fundamental' (cv2.findFundamentalMat: distance to the epipolar line) or
            'homography' (cv2.findHomography: reprojection error in image 1).
        threshold: inlier threshold (px).
        confidence, max_iters: RANSAC stopping criteria.
    Returns:
        Verification; every match is an outlier when there are too few matches (8 for a
        fundamental matrix, 4 for a homography) or RANSAC finds no model.
    """
    if geometry not in GEOMETRIES:
        raise HndescError(f'geometry must be one of {", ".join(GEOMETRIES)}, got {geometry!r}')
    matches = np.asarray(matches, np.int64).reshape(-1, 2)
    inliers = np.zeros(len(matches), bool)
    if len(matches) < MIN_MATCHES[geometry]:
        LOG.warning('%d matches: too few for a %s RANSAC', len(matches), geometry)
        return Verification(inliers, None, geometry, threshold)
    p0 = np.ascontiguousarray(kp0[matches[:, 0]], np.float64)
    p1 = np.ascontiguousarray(kp1[matches[:, 1]], np.float64)
    if geometry == 'fundamental':
        model, mask = cv2.findFundamentalMat(p0, p1, cv2.FM_RANSAC, threshold, confidence,
                                             max_iters)
    else:
        model, mask = cv2.findHomography(p0, p1, cv2.RANSAC, threshold, maxIters=max_iters,
                                         confidence=confidence)
    if model is None or mask is None or model.shape != (3, 3):
        LOG.warning('%s RANSAC found no model on %d matches', geometry, len(matches))
        return Verification(inliers, None, geometry, threshold)
    return Verification(mask.ravel().astype(bool), model, geometry, threshold)
