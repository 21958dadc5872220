"""A landmark's world point refined by every observation that tracking keeps.

A landmark starts from one stereo triangulation, whose depth error grows with the square of
the depth. Projected into a frame that moved forward, that error moves the pixel by about
``(u - cx) * t * d_disparity / (f * b)`` (independent of the depth): on KITTI 06 a step of
1.2 m and a disparity error of half a pixel put a point at the image edge 1 px from where it
is seen, two steps 2 px: outside the 1.5 px PnP gate, so young landmarks near the edges were
dropped after one or two frames. Each observation the tracker keeps (its pose solved) now
refines the point by one Gauss-Newton step in information form (an EKF update with the pose
taken as known), so that a landmark's position improves with every frame that sees it, as
it would in a bundle adjustment, at the cost of a 3x3 solve per observation.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

from hndesc_ros.se3 import inv, transform_points
from hndesc_ros.types import StereoCalib
from hndesc_ros.vo.geometry import stereo_projection


def stereo_information(points: np.ndarray, T_world_cam: np.ndarray, sigma: np.ndarray,
                       calib: StereoCalib) -> np.ndarray:
    """Information of points triangulated from one stereo observation each.

    Args:
        points: (K, 3) world points.
        T_world_cam: 4x4 pose of the frame that observed them.
        sigma: (K,) pixel noise on u_left, v and u_right.
        calib: rectified stereo calibration.
    Returns:
        (K, 3, 3) information (inverse covariance, world frame, 1 / m^2).
    """
    T_cw = inv(T_world_cam)
    H = stereo_projection(transform_points(T_cw, points), calib)[1] @ T_cw[:3, :3]
    return np.einsum('kji,kjl->kil', H, H) / (np.asarray(sigma, float) ** 2)[:, None, None]


def fuse(points: np.ndarray, info: np.ndarray, T_world_cam: np.ndarray, uv: np.ndarray,
         u_right: np.ndarray, sigma: np.ndarray, calib: StereoCalib,
         stereo_gate: float = np.inf) -> Tuple[np.ndarray, np.ndarray]:
    """One observation of each of K landmarks in a frame of known pose -> refined points.

    Args:
        points: (K, 3) world points.
        info: (K, 3, 3) their information (positive definite).
        T_world_cam: 4x4 pose of the frame.
        uv: (K, 2) left pixels.
        u_right: (K,) right u (NaN: no stereo, a 2-D observation).
        sigma: (K,) pixel noise of each observation.
        calib: rectified stereo calibration.
        stereo_gate: a right u farther than this many ``sigma`` from the point's prediction
            is left out (a wrong stereo match would pull a young point halfway to it); the
            left pixel still counts.
    Returns:
        ((K, 3) points, (K, 3, 3) information); a point behind the camera is left as it was.
    """
    T_cw = inv(T_world_cam)
    pc = transform_points(T_cw, points)
    front = pc[:, 2] > 1e-6
    z = np.where(front, pc[:, 2], 1.0)
    sigma = np.asarray(sigma, float)
    pred, J = stereo_projection(np.c_[pc[:, :2], z], calib)
    meas = np.c_[uv.astype(float), np.asarray(u_right, float)]
    r = np.where(np.isfinite(meas), meas - pred, 0.0)
    stereo = np.isfinite(meas[:, 2]) & (np.abs(r[:, 2]) <= stereo_gate * sigma)
    r[~stereo, 2] = 0.0
    H = J @ T_cw[:3, :3]
    H[~stereo, 2, :] = 0.0   # no (usable) right u: only u_left and v inform the point
    w = 1.0 / sigma ** 2
    new_info = info + np.einsum('kji,kjl->kil', H, H) * w[:, None, None]
    # a ridge of 1e-9 / m^2 (a kilometre's uncertainty) keeps every solve defined
    step = np.linalg.solve(new_info + 1e-9 * np.eye(3),
                           (np.einsum('kji,kj->ki', H, r) * w[:, None])[..., None])
    ok = front & np.isfinite(step[:, :, 0]).all(axis=1)
    out_p, out_i = points.copy(), info.copy()
    out_p[ok] = points[ok] + step[ok, :, 0]
    out_i[ok] = new_info[ok]
    return out_p, out_i


def with_disparity_change(points: np.ndarray, T_world_cam: np.ndarray, change: float,
                          calib: StereoCalib) -> np.ndarray:
    """Points moved as a disparity offset ``change`` px larger would have triangulated them.

    Each moves along its ray from the camera at ``T_world_cam`` to the depth its disparity
    there, plus ``change``, gives. An approximation for a point first triangulated from
    farther away (its depth error grew with that depth, not with this one's). A point behind
    the camera, or whose disparity would not stay positive, stays where it is.

    Args:
        points: (K, 3) world points.
        T_world_cam: 4x4 pose of the latest camera.
        change: px added to every disparity.
        calib: rectified stereo calibration.
    Returns:
        (K, 3) world points.
    """
    pc = transform_points(inv(T_world_cam), points)
    fb = calib.fx * calib.baseline
    z = pc[:, 2]
    ok = z > 0
    d = fb / np.where(ok, z, 1.0) + change
    ok &= d > 0
    scale = np.ones(len(pc))
    scale[ok] = fb / d[ok] / z[ok]
    return transform_points(T_world_cam, pc * scale[:, None])
