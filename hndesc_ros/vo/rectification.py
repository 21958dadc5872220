"""The disparity offset a stereo rectification leaves behind, estimated while the camera moves.

A rectified pair whose right principal point is off by a fraction of a pixel measures every
disparity shifted by the same ``offset`` (px): ``d_measured = d_true - offset``. Depth is
``f b / d``, so a near point hardly notices, while a point at 10 px of disparity is 2 % too
deep for a 0.2 px offset, and the trajectory stretches with the depths of the points it sees
(``bench/depth_bias.py`` measures this against ground truth).

The offset is observable from motion, with no ground truth: the same points seen in two
stereo frames must agree on one rigid motion, and only the right offset makes near and far
points agree on its length. :func:`two_view_offset` is that two-frame stereo bundle adjustment
(Gauss-Newton over the motion, the offset and every point, the points eliminated by their
Schur complement), which returns the offset and its information (1 / variance, scaled by the
noise the residuals show) with the motion marginalised out. :class:`DisparityOffset` fuses
those per-pair estimates into one bounded value, allowing for the spread between pairs that
their information does not explain.
"""
from __future__ import annotations

from typing import Optional, Tuple

import cv2
import numpy as np

from hndesc_ros.se3 import make_T, transform_points
from hndesc_ros.types import MAX_DISPARITY_OFFSET_PX, StereoCalib
from hndesc_ros.vo.geometry import stereo_projection, triangulate_stereo


def two_view_offset(uv0: np.ndarray, ur0: np.ndarray, uv1: np.ndarray, ur1: np.ndarray,
                    calib: StereoCalib, T_10: np.ndarray, offset: float = 0.0,
                    sigma_px: float = 1.0, iterations: int = 6, huber_k: float = 1.345,
                    gate: float = 2.8) -> Optional[Tuple[float, float, np.ndarray]]:
    """The disparity offset from N points seen in two stereo frames.

    Measurements: (u_left, v, u_right) in frame 0 and (u_left, v) in frame 1, plus u_right in
    frame 1 where finite. Unknowns: the motion, the offset (``u_right`` measured = predicted
    + offset) and the N points (in frame 0). Huber-robust; solved twice, the second time
    without the points whose residual in either frame exceeds ``gate`` sigmas after the first
    (a wrong match pulls even a robust fit). Points whose disparity, less ``offset``, is not
    positive are left out.

    Args:
        uv0: (N, 2) left pixels in frame 0.
        ur0: (N,) right u in frame 0 (finite), as measured.
        uv1: (N, 2) left pixels in frame 1.
        ur1: (N,) right u in frame 1, as measured (NaN: none).
        calib: rectified stereo calibration.
        T_10: (4, 4) initial T_cam1_cam0 (e.g. from the two frames' tracked poses).
        offset: initial offset (px), relative to the measurements.
        sigma_px: assumed noise of a coordinate (px): the Huber scale and the gate's unit.
        iterations: Gauss-Newton steps per solve (at most).
        huber_k: Huber threshold in sigmas.
        gate: residual, in sigmas, beyond which a point leaves the second solve.
    Returns:
        (offset px, its information in 1 / px^2 with the motion marginalised and scaled by
        the residuals' own variance, refined T_10, the residuals' own noise in px (a
        coordinate's standard deviation: 0.15-0.3 px on well exposed KITTI pairs, about 0.3-0.45
        on pairs blurred against their noise)), or None when too few points remain or the
        system is degenerate.
    """
    ok = uv0[:, 0] - (ur0 - offset) > 0
    uv0, ur0, uv1, ur1 = uv0[ok], ur0[ok], uv1[ok], ur1[ok]
    first = _bundle(uv0, ur0, uv1, ur1, calib, T_10, offset, sigma_px, iterations, huber_k)
    if first is None:
        return None
    keep = first[3] <= gate * sigma_px
    if not keep.all():
        first = _bundle(uv0[keep], ur0[keep], uv1[keep], ur1[keep], calib, first[2],
                        first[0], sigma_px, iterations, huber_k)
    if first is None:
        return None
    offset, info, T, _, noise = first
    return offset, info, T, noise


def _bundle(uv0: np.ndarray, ur0: np.ndarray, uv1: np.ndarray, ur1: np.ndarray,
            calib: StereoCalib, T_10: np.ndarray, offset: float, sigma_px: float,
            iterations: int, huber_k: float
            ) -> Optional[Tuple[float, float, np.ndarray, np.ndarray]]:
    """One Gauss-Newton solve of :func:`two_view_offset` (same arguments).

    Returns:
        (offset, information, T_10, (N,) largest residual norm of each point over the two
        frames, the residuals' noise in px), or None.
    """
    c = calib
    n = len(uv0)
    if n < 6:
        return None
    X = triangulate_stereo(uv0, ur0 - offset, c)  # frame 0
    T = T_10.copy()
    meas0 = np.c_[uv0, ur0]
    meas1 = np.c_[uv1, np.where(np.isfinite(ur1), ur1, 0.0)]
    has_r1 = np.isfinite(ur1).astype(float)

    def residuals(X, T, offset):
        """(n, 3) residuals in frame 0 and 1 (u_right of frame 1 zero where not measured),
        their d/d(point) (n, 3, 3) each, and (n, 3) the points in frame 1."""
        pred0, J0 = stereo_projection(X, c)
        p1 = transform_points(T, X)
        pred1, J1p = stereo_projection(p1, c)
        r0, r1 = pred0 - meas0, pred1 - meas1
        r0[:, 2] += offset
        r1[:, 2] = (r1[:, 2] + offset) * has_r1
        J1p[:, 2] *= has_r1[:, None]
        return r0, r1, J0, J1p, p1

    H = None
    for _ in range(iterations):
        r0, r1, J0, J1p, p1 = residuals(X, T, offset)
        # robust weights per point and frame (Huber on the block's norm), one per row
        w0, w1 = (np.where(e <= huber_k, 1.0, huber_k / np.maximum(e, 1e-12)) / sigma_px ** 2
                  for e in (np.linalg.norm(r0, axis=1) / sigma_px,
                            np.linalg.norm(r1, axis=1) / sigma_px))
        r = np.concatenate([r0, r1], 1)                                 # (n, 6)
        w = np.repeat(np.stack([w0, w1], 1), 3, axis=1)[:, :, None]     # (n, 6, 1)
        # Jacobians of the six rows: camera block (motion 6 + offset 1), point block (3)
        S = np.zeros((n, 3, 6))
        S[:, :, 3:] = np.eye(3)
        S[:, 0, 1], S[:, 0, 2] = p1[:, 2], -p1[:, 1]   # d(p1)/d(w) = -[p1]x
        S[:, 1, 0], S[:, 1, 2] = -p1[:, 2], p1[:, 0]
        S[:, 2, 0], S[:, 2, 1] = p1[:, 1], -p1[:, 0]
        Jc = np.zeros((n, 6, 7))
        Jc[:, 2, 6] = 1.0
        Jc[:, 3:, :6] = J1p @ S
        Jc[:, 5, 6] = has_r1
        JX = np.concatenate([J0, J1p @ T[:3, :3]], 1)                  # (n, 6, 3)
        WJc, WJX = w * Jc, w * JX
        Jc_t = Jc.transpose(0, 2, 1)
        Hcc = (Jc_t @ WJc).sum(0)
        HcX = Jc_t @ WJX                                                # (n, 7, 3)
        HXX = JX.transpose(0, 2, 1) @ WJX                               # (n, 3, 3)
        gc = (WJc * r[:, :, None]).sum((0, 1))
        gX = (WJX * r[:, :, None]).sum(1)                               # (n, 3)
        try:
            HXX_inv = np.linalg.inv(HXX)
        except np.linalg.LinAlgError:
            return None
        K = HcX @ HXX_inv                                   # (n, 7, 3)
        H = Hcc - np.einsum('nij,nkj->ik', K, HcX)          # Schur complement (7, 7)
        g = gc - np.einsum('nij,nj->i', K, gX)
        try:
            dc = -np.linalg.solve(H, g)
        except np.linalg.LinAlgError:
            return None
        dX = -np.einsum('nij,nj->ni', HXX_inv, gX + np.einsum('nji,j->ni', HcX, dc))
        T = make_T(cv2.Rodrigues(dc[:3].reshape(3, 1))[0], dc[3:6]) @ T
        offset += dc[6]
        X = X + dX
        # converged: the step below 1e-4 (rad, m, px) for the camera block and every point
        if max(np.abs(dc).max(), np.abs(dX).max()) < 1e-4:
            break
    if H is None or not np.isfinite(offset):
        return None
    Hmm, hmo, hoo = H[:6, :6], H[:6, 6], H[6, 6]
    try:
        info = float(hoo - hmo @ np.linalg.solve(Hmm, hmo))
    except np.linalg.LinAlgError:
        return None
    r0, r1 = residuals(X, T, offset)[:2]
    worst = np.maximum(np.linalg.norm(r0, axis=1), np.linalg.norm(r1, axis=1))
    # the information assumed sigma_px; the residuals tell the actual noise (a posteriori
    # variance over the degrees of freedom: measured rows less 3 per point and 7)
    dof = 3 * n + 2 * n + int(has_r1.sum()) - 3 * n - 7
    inliers = worst <= 3 * huber_k * sigma_px  # a wrong match would inflate the variance
    if dof <= 0 or inliers.sum() < 6:
        return None
    var = (np.sum(r0[inliers] ** 2) + np.sum(r1[inliers] ** 2)) / (dof * inliers.mean())
    info *= sigma_px ** 2 / max(var, 1e-6)
    return (float(offset), info, T, worst, float(np.sqrt(var))) if info > 0 else None


class DisparityOffset:
    """The running estimate of a rig's disparity offset (px) from two-frame estimates.

    The pairs disagree by more than their information says: each pair also carries an effect
    of its scene (a matching bias that changes with the view), and consecutive pairs share it.
    Over KITTI 06 and 01 and the synthetic room the pairs scatter about their mean by 0.15-0.28
    px beyond their own noise. So the estimates are fused as a random-effects meta-analysis
    (:func:`random_effects`): each weighted by 1 / (its variance + the between-pair variance),
    their weighted median the value, and the standard error taken from those weights. The
    between-pair variance is estimated from the pairs once ``tau_pairs`` have entered (a few
    pairs' scatter says little about it) and is at least ``min_tau`` squared.

    The value stays at ``initial`` until ``min_pairs`` pairs have entered and the fused value
    of all pairs differs from ``initial`` by ``min_z`` standard errors; from then on it is the
    fused value of the latest pairs (:meth:`_latest`: at least ``window`` of them and a
    ``window_share`` of all pairs' weight). Having moved is never undone, so that a rig shown
    to have an offset is not held back at ``initial`` by the test again (its value may still
    come back towards it with the latest pairs); the price: three early pairs sharing a scene
    effect of about 0.3 px, while the between-pair spread is still the floor, would release a
    correct rig for good. The latest pairs rather than all, because the offset a scene implies
    drifts along a drive, and the first pairs are measured while the value is still far from it
    (the front end matches with the value of the moment, and the second and third pairs of
    KITTI 01 give 0.3 and 0.4 px starting from 0, 0.6 and 1.5 px starting from 1.0). Fused over
    every pair, KITTI 01's value stayed near 0.8 px to the end (the path 2 % long), while the
    ground truth's motion wants 0.6 px in the first half and 1.2 in the second
    (``bench/depth_bias.py --pairs``); the ATE of 01's light-changed copies spread over
    0.25-0.43 m, over the latest pairs 0.12-0.30 m (``bench/family.py``: mean 0.37 m, now
    0.28).
    A fixed-effect fusion (the information alone, 2 standard errors) called 0.08-0.12 px on the
    light-changed copies of 06 significant, which moved those runs' scale by a few tenths of a
    per cent (ATE 0.07-0.10 m against 0.04); the random-effects error keeps them below 2
    standard errors, while 0.3-0.5 px shifts of the right image and 01's 0.8 px reach 3.5
    within 3-5 pairs. Pairs less certain than ``max_pair_sigma`` or beyond ``max_px`` are left
    out, and the value is bounded by ``max_px``.

    A noisy pair's scene effect is larger: the spread floor of each pair is ``noise_tau``
    times its residuals' own noise (:func:`two_view_offset`), at least ``min_tau``. On well
    exposed KITTI pairs that noise is 0.15-0.3 px (median 0.2), so the floor is nearly always
    ``min_tau`` (0.1 px); on pairs blurred against their sensor noise (the dark, or 15 grey
    levels of noise in good light) it is 0.3-0.45 px, and their floor 0.12-0.18. Their
    estimates scatter by 0.22-0.31 px against 0.16-0.17 on the same drive's clean pairs, and
    under one floor for all, 9 of 20 noisy copies of KITTI 06 (offset about 0) moved to +0.07
    to +0.33 px (README, "Light that changes"). SIFT stereo on 06 (0.2-0.37 px, whose real
    0.2 px offset must still move) bounds ``noise_tau``: at 0.45 it moves late, at 0.5 never.

    Attributes:
        value: the offset to remove from measured right u (px).
        window: once the value has moved, the fewest latest pairs it is fused from (0: all).
        window_share: ... and the least share of all pairs' weight they hold, in (0, 1].
        noise_tau: a pair's between-pair spread floor per px of its residuals' noise.
        pairs: pairs that entered.
        moved: whether the value has left ``initial``.
    """

    def __init__(self, initial: float = 0.0, min_pairs: int = 3,
                 max_px: float = MAX_DISPARITY_OFFSET_PX, max_pair_sigma: float = 0.5,
                 min_z: float = 3.5, min_tau: float = 0.1, tau_pairs: int = 8,
                 window: int = 8, window_share: float = 1.0 / 3.0, noise_tau: float = 0.4):
        self.estimates: list = []
        self.infos: list = []
        self.floors: list = []  # each pair's floor of the between-pair spread (px)
        self.noise_tau = noise_tau
        self.min_pairs, self.max_px, self.max_pair_sigma = min_pairs, max_px, max_pair_sigma
        self.min_z = min_z
        self.min_tau, self.tau_pairs = min_tau, tau_pairs
        self.window, self.window_share = window, float(np.clip(window_share, 1e-9, 1.0))
        self.pairs = 0
        self.moved = False
        self.initial = self.value = float(np.clip(initial, -max_px, max_px))

    def add(self, offset: float, info: float, noise_px: float = 0.0) -> bool:
        """One pair's estimate (relative to the raw measurements), its information and its
        residuals' noise (px; its spread floor is ``noise_tau`` times that, at least
        ``min_tau``); False if left out."""
        if not (np.isfinite(offset) and np.isfinite(info) and info > 0
                and abs(offset) <= self.max_px and info >= 1.0 / self.max_pair_sigma ** 2):
            return False
        self.estimates.append(float(offset))
        self.infos.append(float(info))
        self.floors.append(max(self.min_tau, self.noise_tau * float(noise_px)))
        self.pairs += 1
        if self.pairs >= self.min_pairs:
            fused, sigma = random_effects(self.estimates, self.infos, self.floors,
                                          estimate_tau=self.pairs >= self.tau_pairs)
            self.moved = self.moved or abs(fused - self.initial) >= self.min_z * sigma
            if self.moved:
                if self.window:
                    fused = self._latest()
                self.value = float(np.clip(fused, -self.max_px, self.max_px))
        return True

    def _latest(self) -> float:
        """The weighted median of the latest pairs: at least ``window`` of them, and at least
        ``window_share`` of all pairs' weight (weak recent pairs reach further back). Weights
        as in :func:`random_effects`, with the between-pair variance of all pairs."""
        e = np.asarray(self.estimates, float)
        weights = random_effects_weights(e, self.infos, self.floors,
                                         self.pairs >= self.tau_pairs)
        enough = np.cumsum(weights[::-1]) >= self.window_share * weights.sum() * (1 - 1e-9)
        n = max(self.window, int(np.argmax(enough)) + 1)
        return weighted_median(e[-n:], weights[-n:])


def random_effects(estimates, infos, min_tau=0.0,
                   estimate_tau: bool = True) -> Tuple[float, float]:
    """Fuse estimates that each carry their own noise and a shared between-estimate spread.

    The between-estimate variance tau^2 is DerSimonian and Laird's moment estimate (the
    weighted scatter about the fixed-effect mean beyond what the estimates' own variances
    explain), at least an estimate's ``min_tau`` squared; each estimate is then weighted by
    1 / (1 / info + tau^2).

    Args:
        estimates: (N,) values.
        infos: (N,) their information (1 / variance), all positive.
        min_tau: floor of the between-estimate standard deviation: one for all, or (N,)
            one per estimate.
        estimate_tau: False: tau is ``min_tau`` (a few estimates' scatter says little).
    Returns:
        (the weighted median, its standard error 1 / sqrt(sum of the weights)).
    """
    weights = random_effects_weights(estimates, infos, min_tau, estimate_tau)
    return (weighted_median(np.asarray(estimates, float), weights),
            float(1.0 / np.sqrt(np.sum(weights))))


def random_effects_weights(estimates, infos, min_tau=0.0,
                           estimate_tau: bool = True) -> np.ndarray:
    """(N,) weights 1 / (1 / info + tau^2) of :func:`random_effects` (same arguments)."""
    e, w = np.asarray(estimates, float), np.asarray(infos, float)
    mean = float(np.sum(w * e) / np.sum(w))
    q = float(np.sum(w * (e - mean) ** 2))
    spread = float(np.sum(w) - np.sum(w ** 2) / np.sum(w))
    tau2 = np.asarray(min_tau, float) ** 2
    if estimate_tau and spread > 0:
        tau2 = np.maximum(tau2, (q - (len(e) - 1)) / spread)
    return 1.0 / (1.0 / w + tau2)


def weighted_median(values, weights) -> float:
    """The value at half the total weight (the mean of the two middle values when half the
    weight falls exactly between them)."""
    order = np.argsort(values)
    v, w = np.asarray(values, float)[order], np.asarray(weights, float)[order]
    cum = np.cumsum(w)
    half = 0.5 * cum[-1]
    # equal weights need not sum to exactly half in floating point: a relative tolerance
    i = int(np.searchsorted(cum, half * (1.0 - 1e-9)))
    if np.isclose(cum[i], half, rtol=1e-9, atol=0.0) and i + 1 < len(v):
        return float(0.5 * (v[i] + v[i + 1]))
    return float(v[i])
