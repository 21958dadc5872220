"""Trajectory metrics: exact cases (synthetic, known answer) and agreement with evo on the real
ORB-SLAM2 / S-PTAM estimates of KITTI 00 (evo is GPL: used here only as a cross-check)."""
import numpy as np
import pytest

from hndesc_ros.datasets import poses as poses_io
from hndesc_ros.eval import trajectory as tj
from hndesc_ros.se3 import from_quat, make_T, to_quat

from conftest import shared_path


def random_traj(n=50, seed=0):
    rng = np.random.default_rng(seed)
    poses = []
    for k in range(n):
        R = from_quat(rng.normal(size=4))
        poses.append(make_T(R, rng.normal(size=3) * 10))
    return np.array(poses)


def test_umeyama_recovers_a_known_sim3():
    gt = random_traj()
    R = from_quat([0.1, -0.3, 0.2, 0.9])
    est = gt.copy()
    est[:, :3, 3] = 0.5 * gt[:, :3, 3] @ R.T + [3, -1, 2]
    est[:, :3, :3] = R @ gt[:, :3, :3]
    assert tj.ate(est, gt, 'sim3')['rmse'] < 1e-9
    assert tj.ate(est, gt, 'se3')['rmse'] > 1.0  # scale is not absorbed by SE(3)


def test_quaternion_roundtrip():
    for T in random_traj(20, 3):
        assert np.allclose(from_quat(to_quat(T[:3, :3])), T[:3, :3], atol=1e-9)


def test_kitti_errors_undefined_for_short_runs_and_zero_for_perfect():
    gt = np.array([make_T(np.eye(3), [0, 0, k * 1.0]) for k in range(300)])
    assert tj.kitti_errors(gt[:50], gt[:50]) is None
    k = tj.kitti_errors(gt, gt)
    assert k['t_err_pct'] < 1e-9 and k['segments'] > 0


@pytest.fixture(scope='module')
def kitti00_files():
    d = shared_path('trajectories', 'kitti_00')
    return d / 'KITTI_00_gt.txt', d / 'KITTI_00_ORB.txt', d / 'KITTI_00_SPTAM.txt'


@pytest.mark.parametrize('which', [1, 2])
def test_ate_and_rpe_agree_with_evo(kitti00_files, which):
    from evo.core import metrics
    from evo.tools import file_interface
    gt_file, est_file = kitti00_files[0], kitti00_files[which]
    _, gt = poses_io.read_trajectory(gt_file)
    _, est = poses_io.read_trajectory(est_file)
    ours = tj.ate(est, gt, 'se3')['rmse']
    ref = file_interface.read_kitti_poses_file(str(gt_file))
    e = file_interface.read_kitti_poses_file(str(est_file))
    e.align(ref, correct_scale=False)
    ape = metrics.APE(metrics.PoseRelation.translation_part)
    ape.process_data((ref, e))
    assert ours == pytest.approx(ape.get_statistic(metrics.StatisticsType.rmse), rel=1e-6)
    # README: ORB-SLAM2 1.30 m, S-PTAM 3.74 m on the full KITTI 00
    assert ours == pytest.approx({1: 1.30, 2: 3.74}[which], abs=0.01)
    rpe = metrics.RPE(metrics.PoseRelation.translation_part, delta=1,
                      delta_unit=metrics.Unit.frames, all_pairs=False)
    ref = file_interface.read_kitti_poses_file(str(gt_file))
    e = file_interface.read_kitti_poses_file(str(est_file))
    rpe.process_data((ref, e))
    assert tj.rpe(est, gt)['trans_rmse'] == pytest.approx(
        rpe.get_statistic(metrics.StatisticsType.rmse), rel=1e-6)


def test_file_formats_roundtrip(tmp_path):
    poses = random_traj(10)
    stamps = np.arange(10) * 0.1
    poses_io.write_kitti(tmp_path / 'a.txt', poses)
    poses_io.write_tum(tmp_path / 'b.txt', stamps, poses)
    _, a = poses_io.read_trajectory(tmp_path / 'a.txt', 'kitti')
    s, b = poses_io.read_trajectory(tmp_path / 'b.txt', 'tum')
    assert np.allclose(a, poses, atol=1e-6) and np.allclose(b, poses, atol=1e-6)
    assert np.allclose(s, stamps)


def test_first_appearance_ate_ignores_the_repeats():
    """Synthetic (exact truth): a run whose repeated frame (order [0, 1, 1, 2, 3]) is off by
    1 m has a first-appearance ATE of 0, while the whole run's ATE counts it."""
    from hndesc_ros.eval.trajectory import ate, first_appearance_ate
    from hndesc_ros.se3 import make_T
    src = np.array([make_T(np.eye(3), [0.0, 0.0, float(k)]) for k in range(4)])
    order = [0, 1, 1, 2, 3]
    gt, est = src[order], src[order].copy()
    est[2, 0, 3] += 1.0
    assert first_appearance_ate(est, gt, order) < 1e-9
    assert ate(est, gt)['rmse'] > 0.1
