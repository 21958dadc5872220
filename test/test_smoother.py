"""GTSAM back end with exact ground truth: synthetic landmarks seen by a known stereo rig
(synthetic because the exact answer must be known)."""
import cv2
import gtsam
import numpy as np

from hndesc_ros.config import VOConfig
from hndesc_ros.eval.trajectory import evaluate, step_lengths
from hndesc_ros.se3 import make_T
from hndesc_ros.types import Observations, StereoCalib
from hndesc_ros.vo.odometry import MonoOdometry, StereoOdometry
from hndesc_ros.vo.smoother import StereoSmoother

CALIB = StereoCalib(700.0, 700.0, 600.0, 180.0, 0.54, 1200, 370)


def scene(n_frames=30, seed=0):
    rng = np.random.default_rng(seed)
    n = 800
    pts = np.c_[rng.uniform(-30, 30, n), rng.uniform(-5, 3, n), rng.uniform(0, 120, n)]
    poses = [make_T(cv2.Rodrigues(np.array([0.0, 0.02 * k, 0.01 * k]))[0], [0.1 * k, 0, k])
             for k in range(n_frames)]
    return pts, np.array(poses)


def observe(pts, T, k, noise=0.0, rng=None):
    Tcw = np.linalg.inv(T)
    pc = pts @ Tcw[:3, :3].T + Tcw[:3, 3]
    z = np.where(pc[:, 2] > 1, pc[:, 2], np.inf)
    u = CALIB.fx * pc[:, 0] / z + CALIB.cx
    v = CALIB.fy * pc[:, 1] / z + CALIB.cy
    ur = CALIB.fx * (pc[:, 0] - CALIB.baseline) / z + CALIB.cx
    ok = np.isfinite(z) & (u > 0) & (u < 1200) & (v > 0) & (v < 370) & (ur > 0)
    uv = np.c_[u, v][ok]
    ur = ur[ok]
    if noise:
        uv = uv + rng.normal(0, noise, uv.shape)
        ur = ur + rng.normal(0, noise, ur.shape)
    ids = np.nonzero(ok)[0]
    return Observations(0.1 * k, k, ids, uv.astype(np.float64), ur.astype(np.float64),
                        np.ones(len(ids), np.float32))


def test_exact_observations_recover_poses_to_1mm():
    pts, poses = scene()
    odo = StereoOdometry(CALIB, VOConfig(async_mapping=False))
    est = np.array([odo.process(observe(pts, T, k)).T_world_cam for k, T in enumerate(poses)])
    assert np.abs(est[:, :3, 3] - poses[:, :3, 3]).max() < 1e-3
    assert odo.lost == 0 and odo.mapper.smoother.factors > 500


def test_smoother_beats_pnp_chaining_under_pixel_noise():
    pts, poses = scene(40, 1)
    errs = {}
    for smooth in (False, True):
        rng = np.random.default_rng(7)
        # every frame a keyframe, landmarks from their second observation: the dense regime
        # in which a sliding-window smoother must beat frame-to-frame PnP on this scene
        odo = StereoOdometry(CALIB, VOConfig(smoother=smooth, async_mapping=False,
                                             keyframe_max_interval=1, min_track_length=2))
        est = np.array([odo.process(observe(pts, T, k, 0.5, rng)).T_world_cam
                        for k, T in enumerate(poses)])
        errs[smooth] = np.sqrt((np.linalg.norm(est[:, :3, 3] - poses[:, :3, 3], axis=1)
                                ** 2).mean())
    assert errs[True] < errs[False]


def test_keyframe_whose_landmarks_all_lie_behind_it_keeps_the_window():
    """Every factor of the new keyframe loses its Jacobian (its guess stands 30 m ahead, so
    every landmark it observes is behind it): GTSAM called that an indeterminate system and
    the window restarted. The loose pose prior keeps it determinate, the pose at its guess and
    the landmarks where the first keyframe put them."""
    rng = np.random.default_rng(0)
    pts = np.c_[rng.uniform(-5, 5, 50), rng.uniform(-2, 2, 50), rng.uniform(5, 20, 50)]
    sm = StereoSmoother(CALIB, 8)
    ahead, true = make_T(np.eye(3), [0, 0, 30.0]), make_T(np.eye(3), [0, 0, 1.0])
    for k, (T_guess, T_true) in enumerate([(np.eye(4), np.eye(4)), (ahead, true)]):
        o = observe(pts, T_true, k)
        assert len(o) > 40
        rows = [(k, int(j), o.uv[i, 0], o.u_right[i], o.uv[i, 1])
                for i, j in enumerate(o.track_ids)]
        T = sm.add_keyframe(k, T_guess, {int(j): pts[j] for j in o.track_ids} if k == 0 else {},
                            rows)
    assert np.allclose(T[:3, 3], [0, 0, 30.0], atol=1e-6)
    est = sm.landmarks(range(50))
    assert len(est) > 40
    assert max(np.linalg.norm(est[j] - pts[j]) for j in est) < 1e-3


class _FailsOnce:
    """iSAM2 whose ``at``-th update fails as GTSAM's does when its elimination meets a
    non-positive pivot: the update's factors, values and stamps are taken, and nothing is
    solved or marginalised."""

    def __init__(self, real, at: int):
        self.real, self.at, self.calls, self.taken = real, at, 0, None

    def update(self, *args):
        self.calls += 1
        if self.calls == self.at:
            self.taken = args
            raise RuntimeError('Indeterminate linear system detected while working near '
                               'variable 8646911284551352363 (Symbol: x43). (injected)')
        self.real.update(*args)

    def getFactors(self):
        graph = gtsam.NonlinearFactorGraph()
        graph.push_back(self.real.getFactors())
        graph.push_back(self.taken[0])
        return graph

    def getLinearizationPoint(self):
        values = gtsam.Values(self.real.getLinearizationPoint())
        values.insert(self.taken[1])
        return values

    def timestamps(self):
        return {**self.real.timestamps(), **dict(self.taken[2].items())}

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_an_isam2_failure_keeps_the_window():
    """iSAM2 fails on the tenth keyframe: the window is eliminated anew (by QR from then on)
    instead of restarting, the poses the failed update would have marginalised leave at the
    next one, and with exact observations every pose stays within 1 mm."""
    pts, poses = scene()
    odo = StereoOdometry(CALIB, VOConfig(async_mapping=False))
    sm = odo.mapper.smoother
    sm.smoother = failing = _FailsOnce(sm.smoother, 10)
    est = np.array([odo.process(observe(pts, T, k)).T_world_cam for k, T in enumerate(poses)])
    assert failing.taken is not None and sm.smoother is not failing
    assert odo.resets == 0 and odo.rebuilds == sm.rebuilds == 1 and odo.mapper.smoother is sm
    assert sm.smoother.getLinearizationPoint().size() > 0
    poses_kept = [k for k in sm.smoother.timestamps() if gtsam.Symbol(k).chr() == ord('x')]
    assert len(poses_kept) <= sm.window + 1
    assert np.abs(est[:, :3, 3] - poses[:, :3, 3]).max() < 1e-3


def test_a_landmark_leaves_the_window_with_the_keyframe_that_first_saw_it():
    """Landmarks seen by every keyframe (a slow camera, a room) must not stay in the window
    past their first keyframe: marginalising a keyframe would join every landmark it shares
    with the window into one dense factor (a synthetic room took 3.2 s a keyframe that way).
    Exact observations, so the poses must still come out to the micrometre."""
    rng = np.random.default_rng(1)
    pts = np.c_[rng.uniform(-5, 5, 60), rng.uniform(-2, 2, 60), rng.uniform(8, 25, 60)]
    window = 4
    sm = StereoSmoother(CALIB, window)
    truth = [make_T(np.eye(3), [0.05 * k, 0, 0.3 * k]) for k in range(3 * window)]
    start = {}  # point -> keyframe that started its current landmark (id start * 1000 + point)
    for k, T_true in enumerate(truth):
        o = observe(pts, T_true, k)
        assert len(o) > 50
        new, rows = {}, []
        for i, j in enumerate(o.track_ids.tolist()):
            if j not in start or not sm.landmark_alive(start[j] * 1000 + j):
                # a new landmark enters with its two previous observations, as the mapper's
                # buffer (vo.min_track_length) gives it: the new keyframe stays tied to the window
                start[j] = max(k - 2, 0)
                new[start[j] * 1000 + j] = pts[j]
                for f in range(start[j], k):
                    p = observe(pts, truth[f], f)
                    r = list(p.track_ids).index(j)
                    rows.append((f, start[j] * 1000 + j, p.uv[r, 0], p.u_right[r], p.uv[r, 1]))
            rows.append((k, start[j] * 1000 + j, o.uv[i, 0], o.u_right[i], o.uv[i, 1]))
        T = sm.add_keyframe(k, T_true @ make_T(np.eye(3), [0.0, 0, 0.01 * (k > 0)]), new, rows)
        assert np.abs(T[:3, 3] - T_true[:3, 3]).max() < 1e-3
        # every landmark in the window was started by a keyframe still in it
        assert all(lm // 1000 > k - window for lm in sm.landmark_time)


def test_tracking_loss_is_reported_and_recovered():
    pts, poses = scene(20, 2)
    odo = StereoOdometry(CALIB, VOConfig(async_mapping=False))
    out = []
    for k, T in enumerate(poses):
        obs = observe(pts, T, k)
        if k == 10:  # a blank frame: nothing observed
            obs = Observations(obs.stamp, k, obs.track_ids[:0], obs.uv[:0], obs.u_right[:0],
                               obs.scores[:0])
        out.append(odo.process(obs))
    assert odo.lost == 1 and not out[10].tracked
    assert all(r.tracked for r in out[11:])
    est = np.array([r.T_world_cam for r in out])
    err = np.linalg.norm(est[:, :3, 3] - poses[:, :3, 3], axis=1)
    assert err[-1] < 0.2  # back on track after re-initialisation from the last good pose


def test_background_mapper_process_gives_the_inline_keyframes():
    """The async mapper runs the same Mapper in another process: after finish() it has refined
    every keyframe, as the inline one did (poses may differ: updates arrive later)."""
    pts, poses = scene(12, 3)
    runs = {}
    for async_mapping in (False, True):
        odo = StereoOdometry(CALIB, VOConfig(async_mapping=async_mapping))
        try:
            res = [odo.process(observe(pts, T, k)) for k, T in enumerate(poses)]
            odo.finish()
        finally:
            odo.close()
        runs[async_mapping] = (res, odo.keyframe_poses)
        if async_mapping:
            assert odo.mapper.proc.poll() is not None  # the process has ended
    kf_inline, kf_async = runs[False][1], runs[True][1]
    keyframes = [r.index for r in runs[False][0] if r.keyframe]
    assert sorted(kf_inline) == sorted(kf_async) == keyframes
    for k in kf_inline:
        assert np.abs(kf_async[k][:3, 3] - poses[k][:3, 3]).max() < 1e-3


# Monocular: the same synthetic scene seen by the left camera only (MonoOdometry with the
# fixed-lag bundle adjustment of MonoSmoother); exact ground truth again.

def mono_run(pts, poses, cfg, noise=0.0, seed=0, gt_scale=True, blank=()):
    """MonoOdometry over the scene's observations (``blank``: frames with none) -> (N, 4, 4)
    poses, the odometry, the FrameResults."""
    rng = np.random.default_rng(seed)
    odo = MonoOdometry(CALIB, cfg, step_lengths(poses).__getitem__ if gt_scale else None)
    out = []
    for k, T in enumerate(poses):
        o = observe(pts, T, k, noise, rng)
        keep = slice(0, 0) if k in blank else slice(None)
        out.append(odo.process(Observations(o.stamp, k, o.track_ids[keep], o.uv[keep],
                                            np.full(len(o.uv[keep]), np.nan),
                                            o.scores[keep])))
    return np.array([r.T_world_cam for r in out]), odo, out


def position_rmse(est, poses):
    return float(np.sqrt((np.linalg.norm(est[:, :3, 3] - poses[:, :3, 3], axis=1) ** 2).mean()))


def test_mono_exact_observations_recover_poses_with_gt_scale():
    pts, poses = scene()
    est, odo, _ = mono_run(pts, poses, VOConfig(mono=True))
    assert np.abs(est[:, :3, 3] - poses[:, :3, 3]).max() < 1e-6
    assert odo.lost == odo.resets == 0 and odo.smoother.factors > 2000


def test_mono_without_scale_carries_the_first_steps_scale():
    """No scale given: the first step is the unit and the landmarks carry it (exact data: the
    trajectory is the ground truth divided by the first step's length)."""
    pts, poses = scene()
    est, odo, _ = mono_run(pts, poses, VOConfig(mono=True), gt_scale=False)
    first = np.linalg.norm(poses[1, :3, 3] - poses[0, :3, 3])
    assert np.abs(est[:, :3, 3] * first - poses[:, :3, 3]).max() < 1e-6
    two_view, _, _ = mono_run(pts, poses, VOConfig(mono=True, smoother=False), gt_scale=False)
    steps = np.linalg.norm(np.diff(two_view[:, :3, 3], axis=0), axis=1)
    assert np.allclose(steps, 1.0)  # without the smoother every step has unit length


def test_mono_bundle_adjustment_beats_two_view_under_pixel_noise_and_repeats():
    pts, poses = scene(40, 1)
    cfg = VOConfig(mono=True)
    smooth, _, _ = mono_run(pts, poses, cfg, 0.5)
    again, _, _ = mono_run(pts, poses, cfg, 0.5)
    two_view, _, _ = mono_run(pts, poses, VOConfig(mono=True, smoother=False), 0.5)
    assert np.array_equal(smooth, again)
    # measured 0.026 vs 0.187 m
    assert position_rmse(smooth, poses) < 0.3 * position_rmse(two_view, poses)


def test_mono_blank_frame_is_lost_counted_and_bridged():
    """The frame after a blank one is measured from the last frame with observations (two
    frames back), with and without the bundle adjustment (exact data)."""
    pts, poses = scene(20, 2)
    for smoother in (True, False):
        est, odo, out = mono_run(pts, poses, VOConfig(mono=True, smoother=smoother), blank={10})
        assert odo.lost == 1 and not out[10].tracked and all(r.tracked for r in out[11:])
        assert np.abs(est[11:, :3, 3] - poses[11:, :3, 3]).max() < 1e-3, smoother


def test_mono_gaps_and_a_standing_camera_keep_one_smoother():
    """Blank frames 0, 9 and 10 (tracks resume after the gap: their landmarks must not be
    made twice; frame 1 has no reference), 9 blank frames later (longer than the window lets a
    landmark live: the resumed tracks must become new landmarks) and a camera that stops for
    five frames (a zero step): no smoother restart, the pose holds still while the camera
    does, and the trajectory stays within 5 cm of the truth."""
    pts, moving = scene(36, 4)
    poses = np.concatenate([moving[:12], np.repeat(moving[12:13], 5, axis=0), moving[13:]])
    blank = {0, 9, 10, *range(25, 34)}
    est, odo, out = mono_run(pts, poses, VOConfig(mono=True), 0.5, seed=3, blank=blank)
    # lost: the 11 blank frames after frame 0 and frame 1 (no reference); the standing
    # frames are recognised as standing, not lost
    assert odo.resets == 0 and odo.lost == 12 and odo.stationary >= 3, odo.stationary
    assert np.abs(est[12:17, :3, 3] - est[12, :3, 3]).max() < 0.02
    # frame 1's pose, reported before any landmark placed it, is a guess: align from frame 2
    assert evaluate(est[2:25], poses[2:25], 'se3')['ate_rmse_m'] < 0.05
    last = len(poses) - 1
    ids = observe(pts, poses[last], last).track_ids.tolist()
    alive = [t for t in ids if t in odo.landmark_of
             and odo.smoother.landmark_time.get(odo.landmark_of[t], -1) == last]
    # measured 67 of 237 (14 while a resumed track kept its marginalised landmark)
    assert len(alive) > 0.2 * len(ids), (len(alive), len(ids))


def test_a_keyframe_without_stereo_is_placed_by_projection_factors():
    """A frame tracked by KLT alone has no stereo (``vo.klt_frames``); its observations of the
    window's landmarks are projection factors (GenericProjectionFactor), so it is a keyframe
    like the others. Exact observations: the stereo keyframes fix the landmarks, and the
    mono keyframe, started 5 cm off (a tracked pose is closer), lands on its true pose to the
    millimetre in the one iSAM2 step a keyframe gets."""
    rng = np.random.default_rng(3)
    pts = np.c_[rng.uniform(-5, 5, 80), rng.uniform(-2, 2, 80), rng.uniform(8, 30, 80)]
    sm = StereoSmoother(CALIB, 8)
    truth = [make_T(np.eye(3), [0.05 * k, 0, 0.5 * k]) for k in range(4)]
    for k, T_true in enumerate(truth):
        o = observe(pts, T_true, k)
        mono = k == 3
        rows = [(k, int(j), o.uv[i, 0], np.nan if mono else o.u_right[i], o.uv[i, 1], 1.0)
                for i, j in enumerate(o.track_ids)]
        new = {int(j): pts[j] for j in o.track_ids} if k == 0 else {}
        guess = T_true @ make_T(np.eye(3), [0.03, 0.0, 0.04]) if mono else T_true
        T = sm.add_keyframe(k, guess, new, rows)
    assert np.abs(T[:3, 3] - truth[3][:3, 3]).max() < 1e-3


def test_keypoint_noise_weights_a_coarse_observation_less():
    """An observation's noise multiple (``Observations.noise``: a coarse keypoint is located
    to its scale's pixels) sets its factor's sigma. One keyframe's 40 landmarks are exact and
    one is 3 px off in u: with noise 1 on all, the pose takes part of that error; with the
    wrong one declared 8 times noisier, the pose moves less than half as far (exact, so
    synthetic)."""
    rng = np.random.default_rng(4)
    pts = np.c_[rng.uniform(-5, 5, 41), rng.uniform(-2, 2, 41), rng.uniform(6, 12, 41)]
    moved = {}
    for sigma in (1.0, 8.0):
        sm = StereoSmoother(CALIB, 8)
        truth = [make_T(np.eye(3), [0.0, 0, 0.4 * k]) for k in range(2)]
        for k, T_true in enumerate(truth):
            o = observe(pts, T_true, k)
            rows = []
            for i, j in enumerate(o.track_ids):
                bad = k == 1 and i == 0
                rows.append((k, int(j), o.uv[i, 0] + 3.0 * bad, o.u_right[i] + 3.0 * bad,
                             o.uv[i, 1], sigma if bad else 1.0))
            T = sm.add_keyframe(k, T_true, {int(j): pts[j] for j in o.track_ids} if k == 0
                                else {}, rows)
        moved[sigma] = np.linalg.norm(T[:3, 3] - truth[1][:3, 3])
    assert moved[1.0] > 1e-4 and moved[8.0] < 0.5 * moved[1.0], moved


def test_mapper_adds_projection_factors_only_for_landmarks_begun_with_stereo():
    """Observations without stereo become projection factors of landmarks that entered the
    window with stereo; a track never seen with stereo starts nothing (exact, synthetic)."""
    from hndesc_ros.vo.mapper import Keyframe, Mapper
    rng = np.random.default_rng(5)
    pts = np.c_[rng.uniform(-5, 5, 60), rng.uniform(-2, 2, 60), rng.uniform(8, 30, 60)]
    mapper = Mapper(CALIB, VOConfig(min_track_length=2))
    before = 0
    for k in range(3):
        T = make_T(np.eye(3), [0.0, 0, 0.5 * k])
        o = observe(pts, T, k)
        ids, uv, ur = o.track_ids, o.uv, o.u_right.copy()
        if k == 2:  # no stereo, and one track the mapper never saw
            ids, uv = np.r_[ids, 999], np.r_[uv, [[600.0, 180.0]]]
            ur = np.full(len(ids), np.nan)
        n = len(ids)
        before = mapper.smoother.factors
        upd = mapper.add_keyframe(Keyframe(k, T, ids, uv, ur, np.isfinite(ur),
                                           np.zeros(n, bool), True, np.ones(n, np.float32)))
        assert not upd.reset
    added = mapper.smoother.factors - before
    assert added == len(ids) - 1 + 1  # one per known landmark, and the keyframe's pose prior
    assert 999 not in mapper.segment
    assert np.abs(upd.T_world_cam[:3, 3] - [0, 0, 1.0]).max() < 1e-3


def test_keyframes_follow_parallax_not_frame_count():
    """``vo.keyframe_parallax_deg``: a camera moving 1 m a frame past landmarks 8-40 m away
    (KITTI-like, 2-4 degrees a frame) makes every frame a keyframe; the same scene at 5 cm a
    frame (a slow camera) only every ``vo.keyframe_max_interval`` frames (exact, synthetic)."""
    rng = np.random.default_rng(6)
    pts = np.c_[rng.uniform(-15, 15, 900), rng.uniform(-3, 3, 900), rng.uniform(8, 40, 900)]
    counts = {}
    for step in (1.0, 0.05):
        odo = StereoOdometry(CALIB, VOConfig(async_mapping=False))
        res = [odo.process(observe(pts, make_T(np.eye(3), [0, 0, step * k]), k))
               for k in range(13)]
        counts[step] = sum(r.keyframe for r in res)
    assert counts[1.0] == 13 and counts[0.05] == 1 + 12 // VOConfig().keyframe_max_interval, \
        counts


def test_a_pair_without_stereo_is_a_keyframe_only_when_it_must_be():
    """A KLT pair (no right u) at 1 m a frame past landmarks 8-40 m away: by parallax every
    frame would be a keyframe; without stereo it is one only when the interval
    (``vo.keyframe_max_interval``), a turn or weak tracking asks, so the window's places go
    to pairs with stereo; with ``vo.klt_keyframes`` by parallax too. Exact, synthetic: every
    odd frame has no stereo, as with ``vo.klt_frames: 1``; the even ones are keyframes by
    parallax, so the interval never forces an odd one here."""
    rng = np.random.default_rng(6)
    pts = np.c_[rng.uniform(-15, 15, 900), rng.uniform(-3, 3, 900), rng.uniform(8, 40, 900)]
    keyframes = {}
    for klt_keyframes in (False, True):
        odo = StereoOdometry(CALIB, VOConfig(async_mapping=False, klt_keyframes=klt_keyframes))
        res = []
        for k in range(13):
            o = observe(pts, make_T(np.eye(3), [0, 0, 1.0 * k]), k)
            if k % 2:
                o = Observations(o.stamp, o.index, o.track_ids, o.uv,
                                 np.full(len(o), np.nan), o.scores)
            res.append(odo.process(o))
        keyframes[klt_keyframes] = [r.index for r in res if r.keyframe]
    assert keyframes[True] == list(range(13))
    assert keyframes[False] == list(range(0, 13, 2)), keyframes
