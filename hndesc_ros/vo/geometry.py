"""Camera geometry (numpy / OpenCV): stereo and track triangulation, projection, PnP,
essential matrix.

Rigid-transform helpers live in :mod:`hndesc_ros.se3`.
"""
from __future__ import annotations

from typing import Optional, Tuple, Union

import cv2
import numpy as np
from scipy.optimize import least_squares

from hndesc_ros.se3 import inv, make_T, scale_motion, skew, transform_points
from hndesc_ros.types import StereoCalib


def triangulate_stereo(uv_left: np.ndarray, u_right: np.ndarray,
                       calib: StereoCalib) -> np.ndarray:
    """Rectified stereo: (N, 2) left pixels and (N,) right u -> (N, 3) points, left camera."""
    disp = uv_left[:, 0] - u_right
    z = calib.fx * calib.baseline / np.maximum(disp, 1e-6)
    x = (uv_left[:, 0] - calib.cx) * z / calib.fx
    y = (uv_left[:, 1] - calib.cy) * z / calib.fy
    return np.stack([x, y, z], 1)


def stereo_projection(pc: np.ndarray, calib: StereoCalib) -> Tuple[np.ndarray, np.ndarray]:
    """Rectified stereo projection of camera points and its derivative.

    Args:
        pc: (N, 3) points in the left camera's frame (z clamped at 1e-6).
        calib: rectified stereo calibration.
    Returns:
        ((N, 3) predicted (u_left, v, u_right), (N, 3, 3) their derivatives by the point's x,
        y, z in px / m).
    """
    c = calib
    x, y, z = pc[:, 0], pc[:, 1], np.maximum(pc[:, 2], 1e-6)
    fx, fy, b = c.fx, c.fy, c.baseline
    pred = np.stack([fx * x / z + c.cx, fy * y / z + c.cy, fx * (x - b) / z + c.cx], 1)
    J = np.zeros((len(pc), 3, 3))
    J[:, 0, 0], J[:, 0, 2] = fx / z, -fx * x / z ** 2
    J[:, 1, 1], J[:, 1, 2] = fy / z, -fy * y / z ** 2
    J[:, 2, 0], J[:, 2, 2] = fx / z, -fx * (x - b) / z ** 2
    return pred, J


def project(points: np.ndarray, T_cam_world: np.ndarray, calib: StereoCalib) -> np.ndarray:
    """(N, 3) world points -> (N, 2) pixels in the camera at T_cam_world."""
    pc = transform_points(T_cam_world, points)
    return np.stack([calib.fx * pc[:, 0] / pc[:, 2] + calib.cx,
                     calib.fy * pc[:, 1] / pc[:, 2] + calib.cy], 1)


def solve_pnp(points: np.ndarray, pixels: np.ndarray, calib: StereoCalib,
              guess: Optional[np.ndarray] = None, reproj_px: float = 1.5,
              iterations: int = 300) -> Tuple[Optional[np.ndarray], np.ndarray]:
    """PnP-RANSAC (minimal AP3P hypotheses) + LM refinement on the inliers.

    Args:
        points: (N, 3) in the reference frame; pixels: (N, 2) in the current image.
        guess: optional 4x4 T_cur_ref initial guess (constant velocity), handed to OpenCV.
    Returns:
        (T_cur_ref 4x4 or None, inlier indices (M,)).
    """
    if len(points) < 6:
        return None, np.zeros(0, np.int64)
    obj = np.ascontiguousarray(points, np.float64)
    img = np.ascontiguousarray(pixels, np.float64)
    K = calib.K
    rvec = tvec = None
    use_guess = guess is not None
    if use_guess:
        rvec, _ = cv2.Rodrigues(guess[:3, :3])
        tvec = guess[:3, 3].reshape(3, 1).copy()
    ok, rvec, tvec, inl = cv2.solvePnPRansac(
        obj, img, K, None, rvec, tvec, useExtrinsicGuess=use_guess,
        iterationsCount=iterations, reprojectionError=reproj_px, confidence=0.999,
        flags=cv2.SOLVEPNP_AP3P)
    if not ok or inl is None or len(inl) < 6:
        return None, np.zeros(0, np.int64)
    inl = inl.ravel()
    rvec, tvec = cv2.solvePnPRefineLM(obj[inl], img[inl], K, None, rvec, tvec)
    T = make_T(cv2.Rodrigues(rvec)[0], tvec)
    return T, reprojection_inliers(obj, img, T, calib, reproj_px)  # with the refined pose


def reprojection_inliers(points: np.ndarray, pixels: np.ndarray, T_cur_ref: np.ndarray,
                         calib: StereoCalib, gate_px: Union[float, np.ndarray]) -> np.ndarray:
    """Indices of the (N, 3) points in front of the camera that project within ``gate_px``
    (one gate, or (N,) gates) of their (N, 2) pixels."""
    err = np.linalg.norm(project(points, T_cur_ref, calib) - pixels, axis=1)
    front = transform_points(T_cur_ref, points)[:, 2] > 0
    return np.nonzero((err < gate_px) & front)[0]


def refine_pnp(points: np.ndarray, pixels: np.ndarray, calib: StereoCalib,
               T_cur_ref: np.ndarray, reproj_px: Union[float, np.ndarray] = 1.5,
               coarse_px: Optional[Union[float, np.ndarray]] = None
               ) -> Tuple[np.ndarray, np.ndarray]:
    """Motion-only refinement (no RANSAC) from an initial pose: Levenberg-Marquardt on the
    points that reproject within a gate, twice at ``reproj_px`` (after one round at
    ``coarse_px`` when the start is only a prediction). Each gate is one value for every
    point or (N,) values, one a point.

    Returns:
        (refined T_cur_ref 4x4, inlier indices (M,) at ``reproj_px``).
    """
    obj = np.ascontiguousarray(points, np.float64)
    img = np.ascontiguousarray(pixels, np.float64)
    T = T_cur_ref
    gates = ([coarse_px] if coarse_px is not None else []) + [reproj_px, reproj_px]
    for gate in gates:
        inl = reprojection_inliers(obj, img, T, calib, gate)
        if len(inl) < 6:
            return T, inl
        rvec, _ = cv2.Rodrigues(T[:3, :3])
        rvec, tvec = cv2.solvePnPRefineLM(obj[inl], img[inl], calib.K, None, rvec,
                                          T[:3, 3].reshape(3, 1).copy())
        T = make_T(cv2.Rodrigues(rvec)[0], tvec)
    return T, reprojection_inliers(obj, img, T, calib, reproj_px)


def pnp_from_prediction(points: np.ndarray, pixels: np.ndarray, calib: StereoCalib,
                        T_guess: np.ndarray, reproj_px: Union[float, np.ndarray],
                        iterations: int,
                        min_inliers: int, min_share: float
                        ) -> Tuple[Optional[np.ndarray], np.ndarray]:
    """Pose from a good prediction: :func:`refine_pnp` from ``T_guess`` (T_cur_ref), and
    PnP-RANSAC (:func:`solve_pnp`) only when that explains fewer than ``min_inliers`` or than
    ``min_share`` of the (N,) correspondences (the prediction was off). Of the two, the pose
    with more inliers wins: RANSAC's minimal samples can settle on a worse pose than the
    refinement found (a flickering frame of KITTI 01: 82 inliers 0.31 m off, against 92).
    ``reproj_px``: one gate, or (N,) gates (RANSAC then samples at their median, and its
    pose's inliers are counted at each point's own gate).

    Returns:
        (T_cur_ref 4x4 or None, inlier indices (M,)).
    """
    T, inl = refine_pnp(points, pixels, calib, T_guess, reproj_px, coarse_px=8 * reproj_px)
    if len(inl) < max(min_inliers, min_share * len(points)):
        T_r, inl_r = solve_pnp(points, pixels, calib, T_guess, float(np.median(reproj_px)),
                               iterations)
        if T_r is not None and np.ndim(reproj_px):
            inl_r = reprojection_inliers(points, pixels, T_r, calib, reproj_px)
        if T_r is not None and len(inl_r) >= len(inl):
            T, inl = T_r, inl_r
        elif len(inl) < 6:  # refine_pnp gave up (too few points in its gate)
            T = None
    return T, inl


def essential_motion(p0: np.ndarray, p1: np.ndarray, calib: StereoCalib,
                     threshold_px: float = 1.0):
    """5-point RANSAC essential matrix, the pose recovered from it, then refined on the inliers
    (:func:`refine_relative_pose`): (N, 2) x2 -> (T_cur_prev with unit t or None, inliers)."""
    if len(p0) < 8:
        return None, np.zeros(0, np.int64)
    E, mask = cv2.findEssentialMat(p0, p1, calib.K, cv2.RANSAC, 0.9999, threshold_px)
    if E is None or E.shape != (3, 3):
        return None, np.zeros(0, np.int64)
    n, R, t, mask2 = cv2.recoverPose(E, p0, p1, calib.K, mask=mask)
    inl = np.nonzero(mask2.ravel() > 0)[0]
    if n < 8:
        return None, inl
    K_inv = np.linalg.inv(calib.K)
    x0 = np.c_[p0[inl], np.ones(len(inl))] @ K_inv.T
    x1 = np.c_[p1[inl], np.ones(len(inl))] @ K_inv.T
    R, t = refine_relative_pose(R, t.ravel(), x0, x1, threshold_px / calib.fx)
    return make_T(R, t), inl


def sampson(E: np.ndarray, x0: np.ndarray, x1: np.ndarray) -> np.ndarray:
    """(N,) signed Sampson distances of ``x1^T E x0 = 0`` for (N, 3) normalised homogeneous
    points (in normalised image units: pixels / f)."""
    ex0, etx1 = x0 @ E.T, x1 @ E
    den = np.sqrt(ex0[:, 0] ** 2 + ex0[:, 1] ** 2 + etx1[:, 0] ** 2 + etx1[:, 1] ** 2)
    return np.sum(x1 * ex0, axis=1) / (den + 1e-12)


def refine_relative_pose(R: np.ndarray, t: np.ndarray, x0: np.ndarray, x1: np.ndarray,
                         scale: float) -> Tuple[np.ndarray, np.ndarray]:
    """Two-view refinement: the rotation and translation direction (5 degrees of freedom)
    that minimise the Huber-robust Sampson distance of ``x1^T [t]x R x0 = 0`` over the
    RANSAC inliers. OpenCV's essential matrix comes from the best minimal 5-point sample;
    this least-squares step uses every inlier (KITTI 00 mono with GT scale: 0.27 -> 0.16 m).

    Args:
        R: (3, 3), t: (3,) from recoverPose (T_cur_prev).
        x0, x1: (N, 3) normalised homogeneous image points (K^-1 [u, v, 1]).
        scale: Huber width in normalised units (pixels / fx).
    Returns:
        (R (3, 3), unit t (3,)).
    """
    t = t / np.linalg.norm(t)
    a = np.cross(t, [1.0, 0.0, 0.0] if abs(t[0]) < 0.9 else [0.0, 1.0, 0.0])
    a /= np.linalg.norm(a)
    b = np.cross(t, a)

    def pose(p):
        tp = t + p[3] * a + p[4] * b
        return cv2.Rodrigues(p[:3].reshape(3, 1))[0] @ R, tp / np.linalg.norm(tp)

    def residuals(p):
        Rp, tp = pose(p)
        return sampson(skew(tp) @ Rp, x0, x1)

    sol = least_squares(residuals, np.zeros(5), loss='huber', f_scale=scale)
    return pose(sol.x)


def _bearings(uv: np.ndarray, calib: StereoCalib) -> np.ndarray:
    """(N, 2) pixels -> (N, 3) unit viewing rays in the camera frame."""
    x = np.c_[uv, np.ones(len(uv))] @ np.linalg.inv(calib.K).T
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _kabsch(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The rotation R that best maps the (N, 3) rays ``a`` onto ``b`` (b ~ R a); N >= 2."""
    U, _, Vt = np.linalg.svd(a.T @ b)
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(Vt.T @ U.T))])
    return Vt.T @ D @ U.T


def rotation_parallax(p0: np.ndarray, p1: np.ndarray, calib: StereoCalib, hypotheses: int = 32,
                      seed: int = 0) -> Tuple[np.ndarray, float]:
    """How much of the motion between two views a pure rotation explains: the rotation that
    best maps the first view's rays onto the second's (least median of squares over the
    identity and 2-point samples, then refined on the points within 2.5 medians), and the
    median angle that remains, the parallax a translation would have to explain. Near zero
    (a camera standing still or only turning), the translation is not observable and an
    essential matrix from these points is noise.

    Args:
        p0: (N, 2) pixels in the first view, N >= 2.
        p1: (N, 2) pixels of the same points in the second view.
        calib: the camera (its K).
        hypotheses: random 2-point rotation samples besides the identity.
        seed: of the samples (deterministic).
    Returns:
        (R_cur_prev (3, 3), median remaining parallax in degrees).
    """
    b0, b1 = _bearings(p0, calib), _bearings(p1, calib)
    rng = np.random.default_rng(seed)
    pairs = rng.integers(0, len(b0), (hypotheses, 2))
    candidates = [np.eye(3)] + [_kabsch(b0[i], b1[i]) for i in pairs if i[0] != i[1]]

    def angles(R):
        return np.arccos(np.clip(np.sum((b0 @ R.T) * b1, axis=1), -1.0, 1.0))

    R = min(candidates, key=lambda c: np.median(angles(c)))
    for _ in range(2):
        r = angles(R)
        near = r <= 2.5 * np.median(r) + 1e-12
        if near.sum() >= 2:
            R = _kabsch(b0[near], b1[near])
    return R, float(np.degrees(np.median(angles(R))))


def epipolar_distance_deg(T_cur_prev: np.ndarray, p0: np.ndarray, p1: np.ndarray,
                          calib: StereoCalib) -> float:
    """Median Sampson distance of (N, 2) matches ``p0`` -> ``p1`` from the epipolar geometry of
    the motion ``T_cur_prev`` (its translation direction), as an angle in degrees: the
    residual the essential matrix leaves (about 0.95 sigma for keypoint noise sigma)."""
    K_inv = np.linalg.inv(calib.K)
    x0 = np.c_[p0, np.ones(len(p0))] @ K_inv.T
    x1 = np.c_[p1, np.ones(len(p1))] @ K_inv.T
    t = T_cur_prev[:3, 3] / max(np.linalg.norm(T_cur_prev[:3, 3]), 1e-12)
    return float(np.degrees(np.median(np.abs(sampson(skew(t) @ T_cur_prev[:3, :3], x0, x1)))))


def ray_parallax_deg(uv_a: np.ndarray, T_a: np.ndarray, uv_b: np.ndarray, T_b: np.ndarray,
                     calib: StereoCalib) -> np.ndarray:
    """Angle between the viewing rays of two observations of the same point, in the world
    frame (the parallax a triangulation from them would have).

    Args:
        uv_a, uv_b: (N, 2) pixels; T_a, T_b: (N, 4, 4) or (4, 4) T_world_cam of those views.
    Returns:
        (N,) degrees.
    """
    K_inv = np.linalg.inv(calib.K)

    def rays(uv, T):
        x = np.c_[uv, np.ones(len(uv))] @ K_inv.T
        r = np.einsum('...ij,...j->...i', T[..., :3, :3], x)
        return r / np.linalg.norm(r, axis=-1, keepdims=True)

    cos = np.sum(rays(uv_a, T_a) * rays(uv_b, T_b), axis=-1)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def triangulate_track(pixels: np.ndarray, poses: np.ndarray, calib: StereoCalib,
                      gate_px: float, min_depth: float = 0.5) -> Optional[np.ndarray]:
    """One landmark from its monocular track: linear (DLT) triangulation over every view, kept
    only if the point lies at least ``min_depth`` in front of every camera and reprojects
    within ``gate_px`` in every view (check the parallax first: :func:`ray_parallax_deg`).

    Args:
        pixels: (M, 2) observations, M >= 2; poses: (M, 4, 4) T_world_cam of those views.
    Returns:
        (3,) world point, or None.
    """
    if not np.isfinite(poses).all():
        return None
    K_inv = np.linalg.inv(calib.K)
    x = np.c_[pixels, np.ones(len(pixels))] @ K_inv.T            # (M, 3) normalised
    centre = poses[:, :3, 3].mean(axis=0)                          # conditioning: local origin
    local = poses.copy()
    local[:, :3, 3] -= centre
    P = np.linalg.inv(local)[:, :3, :]                             # (M, 3, 4) local -> cam
    A = np.concatenate([x[:, :1] * P[:, 2] - P[:, 0], x[:, 1:2] * P[:, 2] - P[:, 1]])
    h = np.linalg.svd(A)[2][-1]
    if abs(h[3]) < 1e-12:
        return None
    X = h[:3] / h[3]
    pc = np.einsum('mij,j->mi', P[:, :, :3], X) + P[:, :, 3]      # (M, 3) in each camera
    X = X + centre
    if np.any(pc[:, 2] < min_depth):
        return None
    err = np.hypot(calib.fx * pc[:, 0] / pc[:, 2] + calib.cx - pixels[:, 0],
                   calib.fy * pc[:, 1] / pc[:, 2] + calib.cy - pixels[:, 1])
    return X if np.all(err <= gate_px) else None


def stereo_depth_ok(uv: np.ndarray, u_right: np.ndarray, calib: StereoCalib,
                    min_depth: float, max_depth: float) -> np.ndarray:
    """(N,) bool: a stereo correspondence exists and its depth lies in [min_depth, max_depth]."""
    disp = uv[:, 0] - u_right
    ok = np.isfinite(u_right) & (disp > 0.1)
    z = np.where(ok, calib.fx * calib.baseline / np.where(ok, disp, 1.0), np.inf)
    return ok & (z >= min_depth) & (z <= max_depth)


class ConstantVelocity:
    """The motion model of tracker and back end: the next pose is the last one moved by the
    last frame-to-frame motion, scaled to the time since the last frame when that differs from
    the last interval by more than 25 % (frames dropped on the way: a lost pair must not halve
    the prediction); smaller stamp jitter is noise, not motion, and is ignored. Beyond
    ``MAX_RATIO`` intervals (a stalled camera) the motion is not extrapolated: one interval's
    motion is predicted, and the tracker's relocalisation does the rest.

    Attributes:
        T: (4, 4) T_world_cam of the latest frame.
        velocity: (4, 4) T_prev_cur of the latest measured motion.
    """

    JITTER = (0.8, 1.25)
    MAX_RATIO = 4.0

    def __init__(self) -> None:
        self.T = np.eye(4)
        self.velocity = np.eye(4)
        self.stamp: Optional[float] = None
        self.dt = 0.0  # interval of the latest measured motion, s

    def predict(self, stamp: float) -> np.ndarray:
        """(4, 4) predicted T_world_cam at ``stamp`` (s)."""
        v = self.velocity
        if self.stamp is not None and self.dt > 0 and stamp > self.stamp:
            ratio = (stamp - self.stamp) / self.dt
            if not self.JITTER[0] <= ratio <= self.JITTER[1] and ratio <= self.MAX_RATIO:
                v = scale_motion(v, ratio)
        return self.T @ v

    def update(self, T_new: np.ndarray, stamp: float, measured: bool) -> None:
        """The frame at ``stamp`` is at ``T_new``; ``measured``: estimated (not predicted), so
        the motion since the previous frame becomes the velocity."""
        if measured and self.stamp is not None:
            self.velocity = inv(self.T) @ T_new
            self.dt = stamp - self.stamp
        self.T, self.stamp = T_new, stamp
