"""A camera that stops: real KITTI frames repeated with fresh sensor noise (the ground truth held
still), written by :mod:`hndesc_ros.datasets.variants`, through the mono and stereo VO; and a
smoother failure injected offline and in the back-end node, counted and survived."""
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from rclpy.parameter import Parameter

from conftest import shared_path
from hndesc_ros.config import VOConfig, load_config
from hndesc_ros.datasets.kitti import KittiSequence
from hndesc_ros.datasets.poses import read_trajectory
from hndesc_ros.datasets.variants import ping_pong_order, stop_order, write_variant
from hndesc_ros.errors import HndescError
from hndesc_ros.eval.trajectory import first_appearance_ate
from hndesc_ros.runner import run_sequence
from hndesc_ros.vo.smoother import MonoSmoother, StereoSmoother
from test_ros_faults import Harness, info_msg, ros  # noqa: F401 (fixture)
from test_smoother import mono_run, scene


def test_variant_repeats_frames_with_fresh_noise_and_holds_the_ground_truth(tmp_path, kitti06):
    assert stop_order(5, 2, 2) == [0, 1, 2, 2, 2, 3, 4]
    assert ping_pong_order(4) == [0, 1, 2, 3, 2, 1, 0]
    with pytest.raises(HndescError, match='out of range'):
        stop_order(5, 5, 1)
    seq_dir = write_variant(kitti06, tmp_path, [0, 1, 1, 1, 2], seed=3)
    var, src = KittiSequence(seq_dir), KittiSequence(kitti06, count=3)
    assert len(var) == 5 and var.calib.fx == src.calib.fx and var.calib.width == 1226
    assert np.allclose(np.diff(var.times), np.median(np.diff(KittiSequence(kitti06).times)))
    assert np.array_equal(var.gt[2], var.gt[1]) and np.array_equal(var.gt[4], src.gt[2])
    first, again, third = var.frame(1), var.frame(2), var.frame(3)
    assert np.array_equal(first.left, src.frame(1).left)  # a first appearance: byte for byte
    for fr in (again, third):  # repeats: the same view, fresh noise of about 2 grey levels
        diff = fr.left.astype(float) - first.left
        assert 1.0 < diff.std() < 3.0 and abs(diff.mean()) < 0.5
    assert not np.array_equal(again.left, third.left)


def test_variant_scaled_and_shifted(tmp_path, kitti06):
    """A smaller camera (``scale``): images and projection matrices follow, pixel centres
    kept; a rectification offset (``right_shift``): only the right image moves, to the
    right, by the given sub-pixel amount."""
    src = KittiSequence(kitti06, count=2)
    half = KittiSequence(write_variant(kitti06, tmp_path / 'half', [0, 1], scale=0.5))
    c, h = src.calib, half.calib
    assert half.frame(0).left.shape == (185, 613) and (h.width, h.height) == (613, 185)
    assert np.isclose(h.fx, c.fx / 2) and np.isclose(h.baseline, c.baseline)
    assert np.isclose(h.cx, (c.cx + 0.5) / 2 - 0.5) and np.isclose(h.cy, (c.cy + 0.5) / 2 - 0.5)
    shifted = KittiSequence(write_variant(kitti06, tmp_path / 'shift', [0], right_shift=0.5))
    a, b = src.frame(0), shifted.frame(0)
    assert np.array_equal(a.left, b.left)
    flow = cv2.calcOpticalFlowFarneback(a.right, b.right, None, 0.5, 1, 15, 3, 5, 1.1, 0)
    assert abs(np.median(flow[..., 0]) - 0.5) < 0.05 and abs(np.median(flow[..., 1])) < 0.05


def test_mono_through_a_start_from_rest_and_a_stop_on_kitti00(tmp_path):
    """Mono with GT scale on KITTI 00 frames 0-119, standing still for 10 frames before it
    moves off and for 40 frames at frame 60 (the same images again with fresh sensor noise):
    the CLI finishes (it died in the smoother with a traceback before), nothing is lost, the
    50 standing frames are recognised and hold the pose, and the ATE of the same frames stays
    within 10 % of the run without the stops (measured 0.0818 against 0.0815 m; the whole
    run, which counts the standing positions 50 more times: 0.107 m)."""
    src = shared_path('kitti', 'sequences', '00')
    order = [0] * 10 + stop_order(120, 60, 40)
    seq_dir = write_variant(src, tmp_path / 'data', order, seed=1)
    out = tmp_path / 'out'
    r = subprocess.run([sys.executable, '-m', 'hndesc_ros.cli', 'kitti', '--sequence',
                        str(seq_dir), '--mono', '--gt-scale', '--out', str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0 and 'Traceback' not in r.stderr, r.stderr[-2000:]
    m = json.loads((out / 'metrics.json').read_text())
    assert m['frames'] == len(order) and m['tracking_lost'] <= 2
    assert m['stationary_frames'] >= 45 and m['smoother_resets'] == 0
    poses = read_trajectory(out / 'trajectory_kitti.txt', 'kitti')[1]
    gt = read_trajectory(out / 'groundtruth_kitti.txt', 'kitti')[1]
    for a, b in ((0, 10), (70, 110)):  # the standing frames hold their pose (within 2 cm)
        assert np.abs(poses[a:b + 1, :3, 3] - poses[a, :3, 3]).max() < 0.02, (a, b)
    clean = run_sequence(KittiSequence(src, count=120, mono=True), load_config(), mono=True,
                         gt_scale=True)['metrics']
    assert clean['tracking_lost'] == 0 and clean['stationary_frames'] == 0
    ate = first_appearance_ate(poses, gt, order)
    assert ate <= 1.1 * clean['ate_rmse_m'], (ate, clean['ate_rmse_m'])


def test_stereo_through_a_stop_on_kitti06(tmp_path, kitti06):
    """Stereo on KITTI 06 with frame 25 shown 30 more times: nothing lost, at most one
    keyframe of the standing view (more would count the same stereo measurements again as new
    ones; measured: none), the pose held, and the ATE within 10 % of the same frames without
    the stop (measured 0.018 against 0.023 m; each place at its first appearance within 15 %).
    The disparity offset is held at 0 px, as before the ninth session: this test is about the
    stop. The estimate is chaotic on this copy: its pairs after the stop lean +0.1 to +0.2
    px, and whether they reach 3.5 standard errors before the end turns on details (tenth
    session: 0 px with ATE 0.017 m in one variant of the code, 0.11-0.15 px with 0.048-0.050
    m in others); ``bench/family.py``'s two stop copies stay at 0."""
    order = stop_order(51, 25, 30)
    seq_dir = write_variant(kitti06, tmp_path, order, seed=2)
    cfg = load_config(overrides={'vo.estimate_disparity_offset': False})
    run = run_sequence(KittiSequence(seq_dir), cfg)
    stop = run['metrics']
    clean = run_sequence(KittiSequence(kitti06), cfg)['metrics']
    assert stop['frames'] == 81 and stop['tracking_lost'] == 0 and stop['smoother_resets'] == 0
    assert sum(r.keyframe for r in run['results'][26:56]) <= 1
    assert stop['stationary_frames'] > 20
    # held through the 30 repeats; frame 25 itself is a KLT frame (``vo.klt_frames``), whose
    # pose of the same view differs from the extracted repeats' by 0.3 cm (measured; 2.5 cm
    # before the eighth session)
    assert np.abs(run['poses'][26:56, :3, 3] - run['poses'][26, :3, 3]).max() < 0.01
    assert np.abs(run['poses'][26, :3, 3] - run['poses'][25, :3, 3]).max() < 0.04
    assert stop['ate_rmse_m'] <= 1.1 * clean['ate_rmse_m'], (stop, clean)
    assert first_appearance_ate(run['poses'], run['gt'], order) <= 1.15 * clean['ate_rmse_m']


def test_stereo_through_a_sudden_stop_on_kitti01(tmp_path):
    """KITTI 01 at 1 m a frame stopping dead at frame 35 for 8 frames: the motion model
    predicts a metre that did not happen, and at the start again a standstill. The tracker
    then also tries the last pose (and the whole local map) and keeps the pose that explains
    most landmarks: the step into the stop and the step out of it stay within 10 cm of the
    ground truth's (measured 0.5 and 7.5 cm; 46 and 48 cm before, when only the prediction
    and, on a weak PnP, a RANSAC with fewer inliers than the refinement were tried), and the
    standing frames hold the pose."""
    order = stop_order(51, 35, 8)
    seq_dir = write_variant(shared_path('kitti', 'sequences', '01'), tmp_path, order, seed=2)
    run = run_sequence(KittiSequence(seq_dir), load_config())
    assert run['metrics']['tracking_lost'] == 0
    poses, gt = run['poses'], run['gt']

    def step_error(k):
        """Translation error (m) of the step from pose k - 1 to pose k."""
        rel = np.linalg.inv(poses[k - 1]) @ poses[k]
        rel_gt = np.linalg.inv(gt[k - 1]) @ gt[k]
        return np.linalg.norm((np.linalg.inv(rel_gt) @ rel)[:3, 3])
    assert np.linalg.norm(gt[36, :3, 3] - gt[35, :3, 3]) == 0  # the stop ...
    assert np.linalg.norm(gt[44, :3, 3] - gt[43, :3, 3]) > 0.9  # ... and the start
    assert step_error(36) < 0.10 and step_error(44) < 0.10, (step_error(36), step_error(44))
    held = poses[36:44, :3, 3]
    assert np.abs(held - held[0]).max() < 0.01


# --------------------------------------------------------------------------- injected failures
def fail_once(monkeypatch, cls, name, at):
    """Make ``cls.name`` raise GTSAM's RuntimeError on its ``at``-th call (0-based), once."""
    original, calls = getattr(cls, name), []

    def flaky(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == at + 1:
            raise RuntimeError('Indeterminate linear system detected while working near '
                               'variable 7566047373982433290 (Symbol: x683). (injected)')
        return original(self, *args, **kwargs)
    monkeypatch.setattr(cls, name, flaky)
    return calls


def test_mono_smoother_failure_is_counted_and_survived(monkeypatch):
    """Synthetic scene (exact ground truth): the smoother raises at frame 12; the odometry
    restarts it there from the frame's guess, counts it, and tracks on with the scale it had,
    within 5 cm again (0.5 px noise) once new landmarks are made."""
    pts, poses = scene(30, 5)
    calls = fail_once(monkeypatch, MonoSmoother, 'add_frame', 12)
    for gt_scale in (True, False):
        calls.clear()
        est, odo, out = mono_run(pts, poses, VOConfig(mono=True), 0.5, gt_scale=gt_scale)
        assert odo.resets == 1 and odo.lost == 0 and all(r.tracked for r in out)
        if gt_scale:
            err = est[:, :3, 3] - poses[:, :3, 3]
            # frame 1, and the frame after the restart, are placed by two-view motion alone
            # (measured 0.16 m there); within 5 frames new landmarks hold it to 5 cm again
            assert np.abs(err).max() < 0.25 and np.abs(err[17:]).max() < 0.05
        else:  # the restarted window takes the last step as its unit: the scale goes on
            ratio = (np.linalg.norm(np.diff(est[:, :3, 3], axis=0), axis=1)
                     / np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1))
            assert abs(ratio[14:].mean() / ratio[2:12].mean() - 1) < 0.1, ratio


def test_stereo_smoother_failure_is_counted_and_survived(monkeypatch, kitti06):
    """KITTI 06, 20 frames: the mapper's smoother raises on the fourth keyframe; the window
    restarts there, the run counts it in its metrics and stays on track."""
    fail_once(monkeypatch, StereoSmoother, 'add_keyframe', 3)
    m = run_sequence(KittiSequence(kitti06, count=20), load_config())['metrics']
    assert m['smoother_resets'] == 1 and m['tracking_lost'] == 0
    assert m['ate_rmse_m'] < 0.1


@pytest.mark.parametrize('mono', [False, True])
def test_backend_node_counts_and_survives_a_smoother_failure(
        ros, kitti06, monkeypatch, mono):  # noqa: F811 (the ros fixture)
    """The back-end node (real rclpy, in-process) fed the front end's matches of 8 KITTI 06
    frames: the smoother raises once; every frame still gets a pose, and ``backend/status``
    reports the restart. In stereo it also sends its disparity offset to the front end
    (``backend/disparity_offset``) once 3 frame pairs have informed it."""
    from sensor_msgs.msg import CameraInfo, PointCloud2
    from std_msgs.msg import Float32, Header, String
    from hndesc_ros.ros.backend_node import BackendNode
    from hndesc_ros.ros.common import topic_qos
    from hndesc_ros.ros.conversions import observations_to_cloud
    from hndesc_ros.vo.pipeline import StereoFrontend
    cfg = load_config(None, {'features.extractor': 'rootsift', 'vo.mono': mono})
    seq = KittiSequence(kitti06, count=8, mono=mono)
    front = StereoFrontend(seq.calib, cfg)
    obs = [front.process(seq.frame(k).left, seq.frame(k).right, 0.1 * (k + 1), k)
           for k in range(len(seq))]
    front.close()
    cls, name = (MonoSmoother, 'add_frame') if mono else (StereoSmoother, 'add_keyframe')
    fail_once(monkeypatch, cls, name, 3 if mono else 1)
    node = BackendNode(parameter_overrides=[Parameter('ros.reliable', value=True),
                                            Parameter('vo.mono', value=mono)])
    h = Harness(node)
    qos = topic_qos(True, 100)
    sides = ('left',) if mono else ('left', 'right')
    info = {s: h.io.create_publisher(CameraInfo, 'camera_info' if mono else f'{s}/camera_info',
                                     qos) for s in sides}
    matches = h.io.create_publisher(PointCloud2, 'features/matches', qos)
    status = []
    h.io.create_subscription(String, 'backend/status', lambda m: status.append(
        json.loads(m.data)), 10)
    offsets = []
    h.io.create_subscription(Float32, 'backend/disparity_offset',
                             lambda m: offsets.append(m.data), qos)
    try:
        assert h.spin(lambda: matches.get_subscription_count() > 0, 10)
        for s in sides:
            info[s].publish(info_msg(seq, s))
        assert h.spin(lambda: node.odometry is not None, 10)
        for k, o in enumerate(obs):
            header = Header(frame_id='camera')
            header.stamp.sec, header.stamp.nanosec = 1, (k + 1) * 10**8
            matches.publish(observations_to_cloud(o, header))
            assert h.spin(lambda: node.frames == k + 1, 30), (k, node.drops.counts)
        assert h.spin(lambda: status and status[-1]['frames'] == len(obs), 10)
    finally:
        h.close()
    assert status[-1]['smoother_resets'] == 1 and not status[-1]['dropped'], status[-1]
    assert (status[-1]['disparity_offset_px'] is None) == mono, status[-1]
    if mono:
        assert not offsets
    else:
        # with each keyframe's landmarks (the value goes on moving between keyframes)
        assert offsets and all(abs(v) < 3.0 for v in offsets), offsets
        assert node.odometry.offset.pairs >= 3
    assert np.all(np.isfinite(node.odometry.T if mono else node.odometry.motion.T))


def test_mono_unit_scale_start_at_rest_and_a_blank_frame_in_a_stop_hold_the_pose():
    """No GT scale, 0.3 px noise (synthetic: exact truth): the camera stands for 6 frames,
    moves, stands again for 8 frames with a blank one among them, and moves on. The standing
    frames and the blank one stay where the camera stands (before the fixes: the unit-scale
    gauge was spent on a standing frame and dragged it about 1 unit along the diagonal, and
    the blank frame jumped a whole step), and the trajectory is the truth in units of the
    first moving step (within 5 % of the path)."""
    pts, moving = scene(24, 6)
    poses = np.concatenate([np.repeat(moving[:1], 6, axis=0), moving[:12],
                            np.repeat(moving[11:12], 8, axis=0), moving[12:]])
    est, odo, out = mono_run(pts, poses, VOConfig(mono=True), 0.3, seed=1, gt_scale=False,
                             blank={21})
    assert odo.resets == 0 and odo.lost == 1 and odo.stationary >= 12
    for a, b in ((0, 5), (17, 25)):
        assert np.abs(est[a:b + 1, :3, 3] - est[a, :3, 3]).max() < 0.02, (a, b)
    unit = np.linalg.norm(moving[1, :3, 3] - moving[0, :3, 3])
    err = np.linalg.norm(est[:, :3, 3] * unit - poses[:, :3, 3], axis=1)
    assert err.max() < 0.05 * np.linalg.norm(moving[-1, :3, 3]), err.max()
