"""A landmark's point refined by its observations (vo/landmarks.py), and the tracker's map
points moved with the disparity offset: synthetic points seen by a known stereo rig
(synthetic because the true point must be known exactly)."""
import numpy as np

from hndesc_ros.config import MatchingConfig, VOConfig
from hndesc_ros.se3 import inv, make_T, transform_points
from hndesc_ros.types import StereoCalib
from hndesc_ros.vo.geometry import stereo_projection
from hndesc_ros.vo.landmarks import fuse, stereo_information
from hndesc_ros.vo.tracker import MapTracker

CALIB = StereoCalib(700.0, 700.0, 600.0, 180.0, 0.54, 1200, 370)


def observe(points, T_world_cam, noise=0.0, seed=0):
    """(K, 2) left pixels and (K,) right u of world ``points`` from ``T_world_cam``."""
    pc = transform_points(inv(T_world_cam), points)
    rng = np.random.default_rng(seed)
    u = CALIB.fx * pc[:, 0] / pc[:, 2] + CALIB.cx + rng.normal(0, noise, len(pc))
    v = CALIB.fy * pc[:, 1] / pc[:, 2] + CALIB.cy + rng.normal(0, noise, len(pc))
    ur = CALIB.fx * (pc[:, 0] - CALIB.baseline) / pc[:, 2] + CALIB.cx + rng.normal(
        0, noise, len(pc))
    return np.c_[u, v], ur


def test_jacobian_matches_finite_differences():
    pc = np.array([[2.0, -1.0, 15.0], [-6.0, 0.5, 40.0]])
    J = stereo_projection(pc, CALIB)[1]
    eps = 1e-6
    for k in range(3):
        d = np.zeros(3)
        d[k] = eps
        uv_p, ur_p = observe(pc + d, np.eye(4))
        uv_m, ur_m = observe(pc - d, np.eye(4))
        num = (np.c_[uv_p, ur_p] - np.c_[uv_m, ur_m]) / (2 * eps)
        assert np.allclose(J[:, :, k], num, rtol=1e-5, atol=1e-6)


def test_stereo_depth_uncertainty_grows_with_the_square_of_the_depth():
    """A point twice as far has a depth four times as uncertain along the optical axis."""
    info = stereo_information(np.array([[0.0, 0.0, 10.0], [0.0, 0.0, 20.0]]), np.eye(4),
                              np.ones(2), CALIB)
    depth_sigma = np.sqrt(np.linalg.inv(info)[:, 2, 2])
    assert np.isclose(depth_sigma[1] / depth_sigma[0], 4.0, rtol=1e-6)
    # one pixel of disparity at 10 m: fx b / d^2 x sqrt(2) (u_left and u_right both 1 px)
    d = CALIB.fx * CALIB.baseline / 10.0
    assert np.isclose(depth_sigma[0], CALIB.fx * CALIB.baseline / d ** 2 * np.sqrt(2),
                      rtol=0.02)


def test_a_wrong_depth_converges_to_the_truth_as_the_camera_moves():
    """Points triangulated 5 % too far (a disparity error) are pulled back by exact stereo
    and mono observations from a camera driving forward; the information only grows."""
    rng = np.random.default_rng(1)
    truth = np.c_[rng.uniform(-10, 10, 50), rng.uniform(-2, 1, 50), rng.uniform(12, 50, 50)]
    points = truth * 1.05
    info = stereo_information(points, np.eye(4), np.ones(50), CALIB)
    before = np.linalg.norm(points - truth, axis=1)
    for k in range(1, 6):
        T = make_T(np.eye(3), [0.0, 0.0, 1.2 * k])
        uv, ur = observe(truth, T)
        if k % 2:   # a KLT pair: no stereo
            ur = np.full(len(ur), np.nan)
        new_points, new_info = fuse(points, info, T, uv, ur, np.ones(50), CALIB)
        assert (np.linalg.det(new_info) > np.linalg.det(info)).all()
        points, info = new_points, new_info
    after = np.linalg.norm(points - truth, axis=1)
    assert np.median(after) < 0.2 * np.median(before)
    uv, _ = observe(points, T)
    assert np.abs(uv - observe(truth, T)[0]).max() < 0.3


def test_noisy_observations_average_out():
    """With 0.5 px of noise, ten stereo observations from a static camera bring a point's
    error to about a third of one triangulation's."""
    rng = np.random.default_rng(2)
    truth = np.c_[rng.uniform(-10, 10, 400), rng.uniform(-2, 1, 400), rng.uniform(10, 30, 400)]
    T = np.eye(4)
    uv, ur = observe(truth, T, 0.5, seed=0)
    z = CALIB.fx * CALIB.baseline / (uv[:, 0] - ur)
    points = np.c_[(uv[:, 0] - CALIB.cx) * z / CALIB.fx, (uv[:, 1] - CALIB.cy) * z / CALIB.fy, z]
    first = np.linalg.norm(points - truth, axis=1).mean()
    info = stereo_information(points, T, np.full(400, 0.5), CALIB)
    for seed in range(1, 10):
        uv, ur = observe(truth, T, 0.5, seed=seed)
        points, info = fuse(points, info, T, uv, ur, np.full(400, 0.5), CALIB)
    assert np.linalg.norm(points - truth, axis=1).mean() < 0.45 * first


def test_a_point_behind_the_camera_is_left_as_it_is():
    points = np.array([[0.0, 0.0, -5.0]])
    info = np.eye(3)[None]
    out_p, out_i = fuse(points, info, np.eye(4), np.array([[600.0, 180.0]]),
                        np.array([580.0]), np.ones(1), CALIB)
    assert np.array_equal(out_p, points) and np.array_equal(out_i, info)


def test_the_map_follows_a_new_disparity_offset():
    """A point at 20 m (18.9 px of disparity) moves along its ray to the depth that 0.8 px
    more disparity gives, seen from the latest camera."""
    tr = MapTracker(CALIB, MatchingConfig(), VOConfig())
    T = make_T(np.eye(3), [1.0, 0.0, 3.0])
    tr.motion.update(T, 0.0, True)
    point_cam = np.array([[4.0, -1.0, 20.0]])
    tr.map.add(np.array([7]), transform_points(T, point_cam), np.ones((1, 4), np.float32), 0)
    tr.set_disparity_offset(0.8)
    fb = CALIB.fx * CALIB.baseline
    moved = transform_points(inv(T), tr.map.points)[0]
    assert np.isclose(moved[2], fb / (fb / 20.0 + 0.8))
    assert np.allclose(moved / moved[2], point_cam[0] / 20.0)   # the same ray
    assert tr.disparity_offset == 0.8
    tr.set_disparity_offset(0.0)   # and back
    assert np.allclose(transform_points(inv(T), tr.map.points)[0], point_cam[0])


def test_a_wrong_right_u_is_left_out_and_the_left_pixel_still_counts():
    """A stereo mismatch 20 px off (far beyond the gate of 3 sigmas) would pull a young point
    halfway to a wrong depth; gated, the observation counts as a 2-D one (exact synthetic
    data)."""
    truth = np.array([[3.0, -1.0, 20.0]])
    info = stereo_information(truth, np.eye(4), np.ones(1), CALIB)
    T = make_T(np.eye(3), [0.0, 0.0, 1.0])
    uv, ur = observe(truth, T)
    ungated, _ = fuse(truth, info, T, uv, ur - 20.0, np.ones(1), CALIB)
    gated, gated_info = fuse(truth, info, T, uv, ur - 20.0, np.ones(1), CALIB, 3.0)
    mono, mono_info = fuse(truth, info, T, uv, np.full(1, np.nan), np.ones(1), CALIB)
    assert np.linalg.norm(ungated - truth) > 1.0
    assert np.allclose(gated, mono) and np.allclose(gated_info, mono_info)
    assert np.linalg.norm(gated - truth) < 1e-6
