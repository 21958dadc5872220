"""Rigid transforms in one place: 4x4 homogeneous matrices, quaternions, frame changes.

Poses are ``T_a_b`` (maps points from frame b to frame a). Quaternions are ``(x, y, z, w)``
(ROS order). Pure numpy.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def make_T(R: np.ndarray, t) -> np.ndarray:
    """4x4 homogeneous transform from a (3, 3) rotation and a (3,) translation."""
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, np.asarray(t, float).ravel()
    return T


def inv(T: np.ndarray) -> np.ndarray:
    """Inverse of a 4x4 rigid transform."""
    out = np.eye(4)
    out[:3, :3] = T[:3, :3].T
    out[:3, 3] = -T[:3, :3].T @ T[:3, 3]
    return out


def is_pose(T: np.ndarray, tol: float = 1e-6) -> bool:
    """True if T is a finite 4x4 rigid transform (orthonormal rotation, last row 0 0 0 1)."""
    T = np.asarray(T)
    if T.shape != (4, 4) or not np.all(np.isfinite(T)):
        return False
    R = T[:3, :3]
    return bool(np.allclose(R.T @ R, np.eye(3), atol=tol) and np.linalg.det(R) > 0
                and np.allclose(T[3], [0.0, 0.0, 0.0, 1.0]))


def rotation_angle(R: np.ndarray) -> float:
    """Rotation angle of a 3x3 rotation in radians."""
    return float(np.arccos(np.clip((np.trace(R) - 1) / 2, -1.0, 1.0)))


def skew(v: np.ndarray) -> np.ndarray:
    """(3,) -> (3, 3) cross-product matrix: ``skew(v) @ x == np.cross(v, x)``."""
    return np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])


def _left_jacobian(w: np.ndarray) -> np.ndarray:
    """SO(3) left Jacobian V(w): the translation of exp([w, v]) is V(w) v."""
    theta = float(np.linalg.norm(w))
    W = skew(w)
    if theta < 1e-8:
        return np.eye(3) + 0.5 * W
    return (np.eye(3) + (1 - np.cos(theta)) / theta ** 2 * W
            + (theta - np.sin(theta)) / theta ** 3 * W @ W)


def scale_motion(T: np.ndarray, s: float) -> np.ndarray:
    """``T`` to the power ``s``: the same screw motion (constant velocity) for ``s`` times as
    long, ``exp(s log T)`` in closed form (rotations below 180 degrees)."""
    from scipy.spatial.transform import Rotation
    w = Rotation.from_matrix(T[:3, :3]).as_rotvec()
    v = np.linalg.solve(_left_jacobian(w), T[:3, 3])
    return make_T(Rotation.from_rotvec(s * w).as_matrix(), _left_jacobian(s * w) @ (s * v))


def transform_points(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 transform to (N, 3) points -> (N, 3)."""
    return points @ T[:3, :3].T + T[:3, 3]


def to_quat(R: np.ndarray) -> np.ndarray:
    """3x3 rotation -> (x, y, z, w) unit quaternion."""
    m = R
    tr = np.trace(m)
    if tr > 0:
        s = np.sqrt(tr + 1.0) * 2
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, s / 4]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2]) * 2
        q = [s / 4, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s]
    elif m[1, 1] > m[2, 2]:
        s = np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2]) * 2
        q = [(m[0, 1] + m[1, 0]) / s, s / 4, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s]
    else:
        s = np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1]) * 2
        q = [(m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, s / 4, (m[1, 0] - m[0, 1]) / s]
    q = np.array(q)
    return q / np.linalg.norm(q)


def from_quat(q: Sequence[float]) -> np.ndarray:
    """(x, y, z, w) -> 3x3 rotation."""
    x, y, z, w = np.asarray(q, float) / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def from_xyzq(v: Sequence[float]) -> np.ndarray:
    """(x y z qx qy qz qw) -> 4x4."""
    return make_T(from_quat(v[3:7]), v[:3])


def to_xyzq(T: np.ndarray) -> np.ndarray:
    """4x4 -> (7,) x y z qx qy qz qw."""
    return np.r_[T[:3, 3], to_quat(T[:3, :3])]


def camera_to_base(T_world_cam: np.ndarray, T_base_cam: np.ndarray) -> np.ndarray:
    """Camera trajectory -> body trajectory (REP-105 ``odom`` -> ``base_link``).

    The VO world is the first camera frame; odom is the first body frame, so
    ``T_odom_base = T_base_cam @ T_world_cam @ T_base_cam^-1``.
    """
    return T_base_cam @ T_world_cam @ inv(T_base_cam)


def base_to_camera(T_odom_base: np.ndarray, T_base_cam: np.ndarray) -> np.ndarray:
    """The inverse of :func:`camera_to_base` (odometry back to the camera frame)."""
    return inv(T_base_cam) @ T_odom_base @ T_base_cam
