"""Stereo and mono VO on the real KITTI frames in ../shared/data."""
import json
import subprocess
import sys

import numpy as np
import pytest

from hndesc_ros.config import load_config
from hndesc_ros.datasets.kitti import KittiSequence
from hndesc_ros.runner import run_sequence


def test_kitti_reader(kitti06):
    seq = KittiSequence(kitti06, first=10, count=5)
    assert len(seq) == 5 and seq.calib.width == 1226 and seq.calib.height == 370
    assert abs(seq.calib.baseline - 0.537) < 0.01  # KITTI 04-10: 379.8145 / 707.0912
    gt = seq.gt_relative()
    assert gt.shape == (5, 4, 4) and np.allclose(gt[0], np.eye(4))
    fr = seq.frame(0)
    assert fr.index == 10 and fr.left.shape == fr.right.shape == (370, 1226)


def test_stereo_vo_residual_on_kitti06(kitti06):
    """Bound: measured 0.023 m ATE (0.04 % of the 59.9 m path)
    with the default config (the shipped residual-small, int8 on ONNX Runtime, SIFT on 75,000
    px, block-matching stereo, KLT between extracted pairs and for landmarks detection misses,
    keyframes of extracted pairs, landmark points refined by every observation); over seven
    perturbed copies (``bench/family.py``) 0.028 m on average (ORB-SLAM3: 0.058 m); 0.10 m
    leaves room for other CPUs' int8 kernels and the chaos of 51-frame runs. Block matching's
    disparities need little offset here (the estimate: 0.0 px, not significant) and the path
    length is within 1 % (measured 0.03 %). Landmarks live: a map point (a landmark seen by
    two keyframes or more) is seen by 4.2 keyframes on average (4.1 over the copies; 3.4
    before the tenth session, whose tracker refines each landmark's point by every
    observation and follows landmarks missed in the last frame from the one before), a
    keyframe every other frame, and every landmark by 4.1 frames."""
    seq = KittiSequence(kitti06)
    m = run_sequence(seq, load_config())['metrics']
    assert m['frames'] == m['frames_tracked'] == 51
    assert m['path_length_m'] > 55
    assert m['ate_rmse_m'] < 0.10
    assert m['rpe_trans_m'] < 0.03
    assert abs(m['disparity_offset_px']) < 0.2
    assert abs(m['path_ratio'] - 1) < 0.01
    assert m['map_point_observations'] >= 3.8 and m['keyframes'] >= 24
    assert m['obs_per_landmark'] >= 3.7


def test_sift_stereo_needs_and_finds_an_offset_on_kitti06(kitti06):
    """With SIFT stereo (the right image's SIFT keypoints matched by descriptor) the same
    frames measure disparities about 0.2 px smaller than block matching does
    (``bench/depth_bias.py`` fits 0.20 px against ground truth): the online estimate moves
    (at frame 30, to 0.24 px) and takes the path length to within 0.5 % (measured 0.35 %;
    0.61 % without, in the seventh session). Its final value follows the latest pairs, two of
    which are wild here (-1.7 and -1.0 px): 0.05 px at the end, 0.14-0.35 in the frames
    before (0.29 with the fusion of every pair)."""
    seq = KittiSequence(kitti06)
    m = run_sequence(seq, load_config(overrides={'matching.stereo_method': 'sift'}))['metrics']
    assert m['frames_tracked'] == 51 and m['ate_rmse_m'] < 0.12
    assert 0.0 < m['disparity_offset_px'] < 0.6
    assert abs(m['path_ratio'] - 1) < 0.005


def test_mono_gt_scale_on_kitti00(tmp_path):
    """Published monocular protocol (GT scale) on KITTI 00 frames 0-199 (145 m), default
    extractor, through the CLI: the fixed-lag bundle adjustment meets the goal of 0.10 m ATE
    (measured 0.082 m; over five keypoint orders of the same features 0.064-0.091 m:
    ``bench/mono.py``). Two-view odometry alone gives 0.162 m (0.115-0.215 m)."""
    from conftest import shared_path
    seq_dir = shared_path('kitti', 'sequences', '00')
    out = tmp_path / 'mono'
    r = subprocess.run([sys.executable, '-m', 'hndesc_ros.cli', 'kitti', '--sequence',
                        str(seq_dir), '--count', '200', '--mono', '--gt-scale', '--out',
                        str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads((out / 'metrics.json').read_text())
    for key in ('ate_rmse_m', 'rpe_trans_m', 'frames', 'frames_tracked', 'fps_frontend',
                'fps_backend'):
        assert key in m
    assert m['frames'] == 200 and m['tracking_lost'] == 0 and m['ate_rmse_m'] < 0.10
    for name in ('trajectory_kitti.txt', 'trajectory_tum.txt', 'trajectory.png'):
        assert (out / name).stat().st_size > 0


def test_inline_mapping_is_exactly_repeatable(kitti06):
    """vo.async_mapping false (the default): the same code path twice gives identical poses,
    also when the next pairs are extracted while this one is tracked (vo.pipelined with
    vo.prefetch pairs ahead, the default) and when they are not; the local map gives
    landmarks observed more than once."""
    seq = KittiSequence(kitti06, count=12)
    cfg = load_config(None, {'vo.async_mapping': False})
    runs = [run_sequence(seq, cfg) for _ in range(2)]
    runs.append(run_sequence(seq, load_config(None, {'vo.async_mapping': False,
                                                     'vo.pipelined': False})))
    assert np.array_equal(runs[0]['poses'], runs[1]['poses'])
    assert np.array_equal(runs[0]['poses'], runs[2]['poses'])
    m = runs[0]['metrics']
    assert m['keyframes'] >= 4 and m['obs_per_landmark'] > 1.2 and m['track_length'] > 1.2


def test_learned_keypoints_track_every_frame(kitti06):
    """Learned keypoints (the detector head) with each network descriptor, default settings
    otherwise: every frame tracked on real KITTI 06 frames. The detector sees the image at 0.75
    of its size at least (at the default 0.4 the `residual` VO lost 33 of 51 frames, at 0.5
    `residual-small` 43 of 51)."""
    from hndesc_ros.features.extractor import LEARNED_MIN_SCALE, Extractor
    cfg = load_config(None, {'features.keypoints': 'learned', 'features.extractor': 'residual'})
    assert cfg.features.network_scale < LEARNED_MIN_SCALE
    extractor = Extractor(cfg.features)
    assert extractor.network_scale == LEARNED_MIN_SCALE
    extractor.close()
    seq = KittiSequence(kitti06, count=15)
    for extractor in ('residual', 'cnn', 'residual-small'):
        cfg = load_config(None, {'features.keypoints': 'learned',
                                 'features.extractor': extractor})
        m = run_sequence(seq, cfg)['metrics']
        assert m['frames_tracked'] == 15 and m['tracking_lost'] == 0, extractor
        assert m['ate_rmse_m'] < 0.3, (extractor, m['ate_rmse_m'])


def test_deferred_mapping_gives_the_same_poses(kitti06):
    """The back-end node publishes the pose before mapping (``defer_mapping`` then
    ``map_pending``): the poses equal immediate mapping, also when a caller skips
    ``map_pending`` (the next frame runs it first)."""
    from hndesc_ros.vo.odometry import StereoOdometry
    from hndesc_ros.vo.pipeline import StereoFrontend
    seq = KittiSequence(kitti06, count=10)
    cfg = load_config()
    frontend = StereoFrontend(seq.calib, cfg)
    observations = [frontend.process(f.left, f.right, f.stamp, f.index)
                    for f in (seq.frame(k) for k in range(len(seq)))]
    frontend.close()
    poses = []
    for mode in ('now', 'deferred', 'skipped'):
        odo = StereoOdometry(seq.calib, cfg.vo)
        run = []
        for obs in observations:
            run.append(odo.process(obs, defer_mapping=mode != 'now').T_world_cam)
            if mode == 'deferred':
                odo.map_pending()
        odo.finish()
        assert len(odo.keyframe_poses) >= 4
        poses.append(np.array(run))
        odo.close()
    assert np.array_equal(poses[0], poses[1]) and np.array_equal(poses[0], poses[2])


def test_klt_reobservation_follows_landmarks_detection_misses(kitti06):
    """``vo.klt_reobserve`` (on by default; here with every pair extracted): on real KITTI 06
    frames, landmarks of the last frame that no keypoint matched are followed by KLT, so more of
    them are observed per frame (8 frames: 1046 -> 2655 landmarks continued), every frame stays
    tracked, and most re-observed points take their stereo from the pair's block matching
    (measured: 78 %; the rest lie where block matching has no disparity)."""
    from hndesc_ros.vo.pipeline import StereoVO
    seq = KittiSequence(kitti06, count=8)
    continued, with_stereo = {}, []
    for on in (False, True):
        cfg = load_config(None, {'vo.klt_reobserve': on, 'vo.klt_frames': 0})
        vo = StereoVO(seq.calib, cfg)
        prev, count = set(), 0
        try:
            for res in vo.run(seq.frame(i) for i in range(len(seq))):
                obs = vo.last_observations
                assert res.tracked
                count += len(prev.intersection(obs.track_ids.tolist()))
                prev = set(obs.track_ids.tolist())
                if on and res.index > 0:
                    klt = obs.scores == 0  # re-observed: no keypoint, no score
                    assert klt.any() and (obs.noise[klt] == 1).all()
                    with_stereo.append(np.isfinite(obs.u_right[klt]).mean())
        finally:
            vo.finish()
            vo.close()
        continued[on] = count
    assert continued[True] > 1.3 * continued[False], continued
    assert 0.5 < np.mean(with_stereo) < 1.0, with_stereo


@pytest.mark.parametrize('klt_keyframes', [False, True])
def test_klt_frames_track_between_extracted_pairs(kitti06, klt_keyframes):
    """``vo.klt_frames: 1`` (the default): on real KITTI 06 frames every other pair is
    tracked by KLT alone, with no features, no stereo and no new landmark. Such a pair is a
    keyframe only when the interval, a turn or weak tracking asks for one (none of the 6 here:
    KITTI's extracted pairs already carry 5 degrees of parallax), or, with
    ``vo.klt_keyframes``, by parallax too (all 6: its observations are projection factors).
    The trajectory stays within 0.15 m of the ground truth over 12 frames (measured: 0.025 and
    0.026 m)."""
    from hndesc_ros.eval.trajectory import evaluate
    from hndesc_ros.vo.pipeline import StereoVO
    seq = KittiSequence(kitti06, count=12)
    vo = StereoVO(seq.calib, load_config(None, {'vo.klt_frames': 1,
                                                'vo.klt_keyframes': klt_keyframes}))
    klt, keyframes, poses, seen = 0, 0, [], set()
    try:
        for res in vo.run(seq.frame(i) for i in range(len(seq))):
            obs = vo.last_observations
            assert res.tracked
            poses.append(res.T_world_cam)
            if 'klt_tracking' in obs.timings:  # tracked without extraction
                klt += 1
                assert res.index % 2 == 1
                keyframes += res.keyframe
                assert np.isnan(obs.u_right).all() and seen.issuperset(obs.track_ids.tolist())
                assert 'extract_left' not in obs.timings
            else:
                assert res.keyframe  # every extracted pair here
            seen.update(obs.track_ids.tolist())
    finally:
        vo.finish()
        vo.close()
    assert klt >= 4
    assert keyframes == (klt if klt_keyframes else 0), (klt, keyframes)
    assert evaluate(np.array(poses), seq.gt_relative(), 'se3')['ate_rmse_m'] < 0.15


@pytest.mark.parametrize('stamps, extracted', [
    ([0.05 * k for k in range(9)], [0, 4, 8]),        # a 20 Hz camera: every 4th pair
    ([0.1 * k for k in range(5)], [0, 2, 4]),         # 10 Hz (vo.klt_rate_hz): every other
    ([0.2 * k for k in range(3)], [0, 1, 2]),         # 5 Hz: every pair
    ([0.0, 0.1, 0.3, 0.4, 0.5], [0, 2, 4]),           # 10 Hz, a frame dropped before 0.3 s
    ([0.0] * 5, [0, 2, 4]),                           # no stamps: every other pair
])
def test_klt_frames_follow_the_camera_rate(kitti06, stamps, extracted):
    """``vo.klt_frames: 1`` counts pairs of a ``vo.klt_rate_hz`` (10 Hz) camera: a pair of
    real KITTI 06 images is extracted once 0.2 s have passed since the last extracted one, so
    a faster camera leaves more pairs to KLT, a slower one none; without increasing stamps
    every other pair is extracted."""
    from hndesc_ros.vo.pipeline import StereoFrontend
    seq = KittiSequence(kitti06, count=2)
    cfg = load_config(None, {'vo.klt_frames': 1, 'features.extractor': 'rootsift'})
    frontend = StereoFrontend(seq.calib, cfg)
    frame = seq.frame(0)
    try:
        got = [k for k, t in enumerate(stamps)
               if frontend.extract(frame.left, frame.right, t).left is not None]
    finally:
        frontend.close()
    assert got == extracted


def test_klt_frames_leave_noisy_pairs_to_extraction(kitti06, tmp_path):
    """A pair that ``features.max_noise`` has to blur (the ``dark`` variant of real KITTI 06
    frames: about 15 grey levels of noise after the stretch) is never left to KLT, whatever
    ``vo.klt_frames`` says, while the clean frames are (test above)."""
    from hndesc_ros.datasets.variants import write_variant
    from hndesc_ros.vo.pipeline import StereoVO
    seq = KittiSequence(write_variant(kitti06, tmp_path, list(range(6)), light='dark', seed=1))
    vo = StereoVO(seq.calib, load_config(None, {'vo.klt_frames': 1}))
    try:
        for res in vo.run(seq.frame(i) for i in range(len(seq))):
            assert res.tracked
            assert 'klt_tracking' not in vo.last_observations.timings
            assert 'extract_left' in vo.last_observations.timings
    finally:
        vo.finish()
        vo.close()


def test_a_half_size_camera_is_tracked_like_the_full_one(tmp_path):
    """A camera of half KITTI's size (real 01 frames, area-downsampled, calibration scaled):
    SIFT runs on about ``features.sift_pixels`` whatever the camera, so it finds as many
    keypoints as on the full camera. Measured on 01: 0 frames lost, Sim(3) ATE 0.080 m;
    SIFT at half that size (the rule before, ``features.sift_pixels: 0`` here) lost frames 2
    and 4 (about 130 keypoints a frame) with a Sim(3) ATE of 0.229 m."""
    from conftest import shared_path
    from hndesc_ros.datasets.variants import write_variant
    src = shared_path('kitti', 'sequences', '01')
    seq = KittiSequence(write_variant(src, tmp_path, list(range(len(KittiSequence(src)))),
                                      scale=0.5))
    assert seq.calib.width <= 621  # 1241 x 376 halved
    m = run_sequence(seq, load_config())['metrics']
    assert m['tracking_lost'] == 0
    assert m['ate_sim3_m'] < 0.15


def test_tracking_comes_back_after_a_blackout(kitti06, tmp_path):
    """Six black pairs in real KITTI 06 (frames 20-25: a covered lens, 6 m driven unseen):
    those six, and only those, are lost and carried by the constant-velocity prediction, and
    frame 26 is tracked against landmarks last refined at frame 19. Seen from 6 m farther on,
    their depth errors reproject: at the 1.5 px PnP gate the tracker kept 28 of them (ATE
    0.067 m). Gated by each landmark's own projected uncertainty (``MapTracker._gates``) it
    keeps 63 (measured; ATE 0.052 m)."""
    from hndesc_ros.datasets.variants import write_variant
    from hndesc_ros.vo.pipeline import StereoVO
    seq = KittiSequence(write_variant(kitti06, tmp_path, list(range(51)), blackout=range(20, 26)))
    vo = StereoVO(seq.calib, load_config())
    lost, kept, poses = [], None, []
    try:
        for res in vo.run(seq.frame(i) for i in range(len(seq))):
            ids = vo.last_observations.track_ids
            if res.index == 19:
                before = int(ids.max())   # every landmark started up to the blackout
            if res.index == 26:
                kept = int((ids <= before).sum())
            lost += [] if res.tracked else [res.index]
            poses.append(res.T_world_cam)
    finally:
        vo.finish()
        vo.close()
    assert lost == list(range(20, 26))
    assert kept >= 45
    from hndesc_ros.eval import trajectory as tj
    assert tj.ate(np.array(poses), seq.gt, 'se3')['rmse'] < 0.08
