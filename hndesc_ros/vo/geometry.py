"""Pose and camera geometry helpers (numpy / OpenCV): stereo triangulation, PnP, essential."""
from __future__ import annotations

from typing import Optional, Tuple

import cv2
import numpy as np

from hndesc_ros.types import StereoCalib, make_T  # noqa: F401  (re-exported)


def inv(T: np.ndarray) -> np.ndarray:
    """Inverse of a 4x4 rigid transform."""
    out = np.eye(4)
    out[:3, :3] = T[:3, :3].T
    out[:3, 3] = -T[:3, :3].T @ T[:3, 3]
    return out


def rotation_angle(R: np.ndarray) -> float:
    """Rotation angle of a 3x3 rotation in radians."""
    return float(np.arccos(np.clip((np.trace(R) - 1) / 2, -1.0, 1.0)))


def triangulate_stereo(uv_left: np.ndarray, u_right: np.ndarray,
                       calib: StereoCalib) -> np.ndarray:
    """Rectified stereo: (N, 2) left pixels and (N,) right u -> (N, 3) points, left camera."""
    disp = uv_left[:, 0] - u_right
    z = calib.fx * calib.baseline / np.maximum(disp, 1e-6)
    x = (uv_left[:, 0] - calib.cx) * z / calib.fx
    y = (uv_left[:, 1] - calib.cy) * z / calib.fy
    return np.stack([x, y, z], 1)


def project(points: np.ndarray, T_cam_world: np.ndarray, calib: StereoCalib) -> np.ndarray:
    """(N, 3) world points -> (N, 2) pixels in the camera at T_cam_world."""
    pc = points @ T_cam_world[:3, :3].T + T_cam_world[:3, 3]
    return np.stack([calib.fx * pc[:, 0] / pc[:, 2] + calib.cx,
                     calib.fy * pc[:, 1] / pc[:, 2] + calib.cy], 1)


def solve_pnp(points: np.ndarray, pixels: np.ndarray, calib: StereoCalib,
              guess: Optional[np.ndarray] = None, reproj_px: float = 1.5,
              iterations: int = 300) -> Tuple[Optional[np.ndarray], np.ndarray]:
    """PnP-RANSAC + LM refinement.

    Args:
        points: (N, 3) in the reference frame; pixels: (N, 2) in the current image.
        guess: optional 4x4 T_cur_ref initial guess (constant velocity).
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
        flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok or inl is None or len(inl) < 6:
        return None, np.zeros(0, np.int64)
    inl = inl.ravel()
    rvec, tvec = cv2.solvePnPRefineLM(obj[inl], img[inl], K, None, rvec, tvec)
    R, _ = cv2.Rodrigues(rvec)
    T = make_T(R, tvec)
    # re-collect inliers with the refined pose
    proj = project(obj, T, calib)
    err = np.linalg.norm(proj - img, axis=1)
    front = (obj @ T[:3, :3].T + T[:3, 3])[:, 2] > 0
    inl = np.nonzero((err < reproj_px) & front)[0]
    return T, inl


def essential_motion(p0: np.ndarray, p1: np.ndarray, calib: StereoCalib,
                     threshold_px: float = 1.0):
    """5-point RANSAC essential matrix: (N, 2) x2 -> (T_cur_prev with unit t or None, inliers)."""
    if len(p0) < 8:
        return None, np.zeros(0, np.int64)
    E, mask = cv2.findEssentialMat(p0, p1, calib.K, cv2.RANSAC, 0.999, threshold_px)
    if E is None or E.shape != (3, 3):
        return None, np.zeros(0, np.int64)
    n, R, t, mask2 = cv2.recoverPose(E, p0, p1, calib.K, mask=mask)
    inl = np.nonzero(mask2.ravel() > 0)[0]
    if n < 8:
        return None, inl
    return make_T(R, t.ravel() / (np.linalg.norm(t) + 1e-12)), inl
