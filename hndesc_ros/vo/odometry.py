"""Back end: per-frame pose from the observed landmarks (PnP), keyframes to the mapper.

Input per frame: :class:`~hndesc_ros.types.Observations` (persistent landmark ids from the
front end's tracker). Output: :class:`~hndesc_ros.types.FrameResult` with ``T_world_cam``
(world = first camera frame). The per-frame pose never waits for the smoother: keyframes go to
the mapper (inline or in a background process, ``vo.async_mapping``) and its refined landmark
positions are used from the next frame on. Tracking loss (too few PnP inliers, blank frame)
continues from the constant-velocity prediction and is counted, never raised.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import replace
from typing import Callable, Deque, Dict, List, Optional

import numpy as np

from hndesc_ros.config import VOConfig
from hndesc_ros.errors import CalibrationError, describe
from hndesc_ros.se3 import inv, is_pose, make_T, rotation_angle, transform_points
from hndesc_ros.types import SCORE_FOLLOWED_NOISY, FrameResult, Observations, StereoCalib
from hndesc_ros.vo.geometry import (ConstantVelocity, essential_motion, pnp_from_prediction,
                                    epipolar_distance_deg, ray_parallax_deg,
                                    rotation_parallax, stereo_depth_ok,
                                    triangulate_stereo, triangulate_track)
from hndesc_ros.vo.landmarks import with_disparity_change
from hndesc_ros.vo.mapper import Keyframe, MapUpdate, make_mapper
from hndesc_ros.vo.rectification import DisparityOffset, two_view_offset

LOG = logging.getLogger(__name__)


def load_backend(cfg: VOConfig) -> None:
    """Import what the odometry of ``cfg`` will need (GTSAM for inline mapping, about 0.1-0.5 s
    on a busy machine), so that a long-running node pays it at start-up rather than inside
    its first frame's latency."""
    if cfg.smoother and (cfg.mono or not cfg.async_mapping):
        from hndesc_ros.vo.smoother import _gtsam
        _gtsam()


class StereoOdometry:
    """Stereo VO back end (no images: only observations with landmark ids).

    The rectification's disparity offset (:mod:`~hndesc_ros.vo.rectification`) is removed
    from every right u before use: ``vo.disparity_offset`` when it is known, else (with
    ``vo.estimate_disparity_offset``) estimated from pairs of tracked frames a stereo baseline
    apart (:meth:`_estimate_offset`), from that value, over the first ``OFFSET_PAIRS`` pairs
    that inform it.

    Args:
        calib: rectified stereo calibration.
        cfg: VOConfig (PnP thresholds, keyframe policy, smoother window and noise).
    """

    OFFSET_POINTS = 100   # landmarks per two-frame offset estimate (evenly picked)
    OFFSET_PAIRS = 40     # two-frame estimates after which the offset is kept as it is
    OFFSET_MIN_MOTION = 1.0  # stereo baselines the camera moves between a pair's two frames
    OFFSET_HISTORY = 10   # tracked frames a pair's first frame may lie back (a slow camera)

    def __init__(self, calib: StereoCalib, cfg: Optional[VOConfig] = None):
        if calib.baseline <= 0:
            raise CalibrationError('stereo odometry needs a positive baseline')
        self.calib, self.cfg = calib, cfg or VOConfig()
        self.mapper = make_mapper(calib, self.cfg) if self.cfg.smoother else None
        self.motion = ConstantVelocity()         # latest T_world_cam and its prediction
        self.points: Dict[int, np.ndarray] = {}  # landmark id -> world point (for PnP)
        self.last_seen: Dict[int, int] = {}      # landmark id -> frame
        self.keyframe_poses: Dict[int, np.ndarray] = {}  # frame index -> optimised pose
        self.kf_T: Optional[np.ndarray] = None   # pose of the last keyframe
        self.kept_ids = np.zeros(0, np.int64)  # the last frame's ids its PnP did not reject
        self.kf_frame = 0
        self.kf_ids: set = set()                 # landmarks tracked in the last keyframe
        self.frames = 0
        self.lost = 0
        self.resets = 0                          # smoother failures (window restarted)
        self.rebuilds = 0                        # ... recovered by eliminating anew (QR)
        self.stationary = 0                      # frames standing still (no keyframe)
        self._shared: List[MapUpdate] = []
        # the rectification's disparity offset (px), estimated from motion
        self.offset = DisparityOffset(initial=self.cfg.disparity_offset)
        # (raw Observations, pose) of the latest tracked frames, for the offset's pairs
        self._recent: Deque[tuple] = deque(maxlen=self.OFFSET_HISTORY)
        self._pending: Optional[Keyframe] = None  # keyframe of a deferred mapping step
        self._offset_job: Optional[tuple] = None    # ... and its offset estimate's input

    def close(self) -> None:
        """Stop the background mapper (if any)."""
        if self.mapper is not None:
            self.mapper.close()

    # ------------------------------------------------------------------ keyframes
    def _is_keyframe(self, T: np.ndarray, inlier_ids: np.ndarray, tracked: bool,
                     stereo: bool = True) -> bool:
        """A keyframe when the view has changed enough since the last one (parallax of the
        tracked landmarks, translation, rotation, frames, or share of its landmarks still
        tracked) or too few landmarks are tracked; never while the camera stands still with
        enough of them (a keyframe there would add the same stereo measurements again, as if
        they were independent). A frame without stereo (a KLT pair) is one only by rotation,
        frames or weak tracking, unless ``vo.klt_keyframes``: by parallax it would take a
        window's place with a few dozen projection factors (KITTI 06, seven copies: ATE 0.038
        against 0.028 m without)."""
        c = self.cfg
        if self.kf_T is None or not tracked or c.keyframe_min_translation <= 0:
            return True
        rel = inv(self.kf_T) @ T
        parallax = self._parallax_deg(rel, T, inlier_ids)
        turn = rotation_angle(rel[:3, :3]) >= np.deg2rad(c.keyframe_min_rotation)
        if (len(inlier_ids) >= c.keyframe_min_tracks and not turn and parallax is not None
                and parallax < c.still_parallax):
            self.stationary += 1
            return False
        still = len(self.kf_ids.intersection(inlier_ids.tolist())) if self.kf_ids else 0
        moved = ((parallax is not None and parallax >= c.keyframe_parallax_deg)
                 or np.linalg.norm(rel[:3, 3]) >= c.keyframe_min_translation)
        return (turn or (moved and (stereo or c.klt_keyframes))
                or self.frames - self.kf_frame >= c.keyframe_max_interval
                or len(inlier_ids) < c.keyframe_min_tracks
                or still < c.keyframe_track_ratio * len(self.kf_ids))

    def _parallax_deg(self, rel: np.ndarray, T: np.ndarray,
                      inlier_ids: np.ndarray) -> Optional[float]:
        """The motion ``rel`` since the last keyframe seen from the median depth of the
        tracked landmarks (degrees: translation / depth), or None without any."""
        pts = [self.points[t] for t in inlier_ids.tolist() if t in self.points]
        if not pts:
            return None
        depth = float(np.median(transform_points(inv(T), np.array(pts))[:, 2]))
        return float(np.degrees(np.linalg.norm(rel[:3, 3]) / depth)) if depth > 0 else None

    def _stereo_consistent(self, obs: Observations, T: np.ndarray) -> np.ndarray:
        """(M,) bool: the landmark's known world point reprojects into this stereo observation
        (u_left, u_right, v) within the gate; True for landmarks without a known point."""
        ok = np.ones(len(obs), bool)
        idx = np.array([i for i, t in enumerate(obs.track_ids) if t in self.points], np.int64)
        if not len(idx):
            return ok
        pc = transform_points(inv(T), np.array([self.points[t] for t in obs.track_ids[idx]]))
        c = self.calib
        z = np.maximum(pc[:, 2], 1e-6)
        ul = c.fx * pc[:, 0] / z + c.cx
        ur = c.fx * (pc[:, 0] - c.baseline) / z + c.cx
        v = c.fy * pc[:, 1] / z + c.cy
        err = np.maximum.reduce([np.abs(ul - obs.uv[idx, 0]), np.abs(ur - obs.u_right[idx]),
                                 np.abs(v - obs.uv[idx, 1])])
        gate = self.cfg.stereo_gate_px * obs.noise[idx]
        ok[idx] = (pc[:, 2] > 0) & ~(err > gate)  # NaN counts as consistent
        return ok

    def _apply(self, updates: List[MapUpdate]) -> None:
        """Take the mapper's refined landmarks (and queue them for the front end when
        ``vo.share_map``: nobody drains the queue otherwise)."""
        if self.cfg.share_map:
            self._shared += updates
        for u in updates:
            self.resets += u.reset
            self.rebuilds += u.rebuilt
            self.keyframe_poses[u.index] = u.T_world_cam
            for t, p in zip(u.track_ids.tolist(), u.points):
                if t in self.points:   # a landmark that PnP rejected since stays out
                    self.points[t] = p

    def map_updates(self) -> List[MapUpdate]:
        """Refined landmarks that arrived since the last call, to share with the front end,
        each with the current disparity offset (always empty without ``vo.share_map``)."""
        out, self._shared = self._shared, []
        for u in out:
            u.disparity_offset = self.offset.value
        return out

    # ------------------------------------------------------------------ main
    def process(self, obs: Observations, defer_mapping: bool = False) -> FrameResult:
        """Estimate the pose of one frame from its observations.

        Args:
            defer_mapping: leave this frame's mapping step (a keyframe into the smoother and
                the refined landmarks back) to :meth:`map_pending`, so that a caller can
                publish the pose first; the results are those of an immediate mapping as long
                as :meth:`map_pending` runs before the next frame.
        """
        if self._pending is not None or self._offset_job is not None:
            self.map_pending()  # a deferred mapping step the caller did not run
        t0 = time.perf_counter()
        c = self.cfg
        raw = obs
        if self.offset.value:  # right u as a rectification without the offset would give
            obs = replace(obs, u_right=obs.u_right - np.float32(self.offset.value))
        ids = obs.track_ids
        stereo_ok = stereo_depth_ok(obs.uv, obs.u_right, self.calib, c.min_depth, c.max_depth)
        guess = self.motion.predict(obs.stamp)
        known = np.array([t in self.points for t in ids.tolist()], bool)
        T_new, inliers, tracked = guess, np.zeros(0, np.int64), False
        if self.frames == 0:
            T_new, tracked = np.eye(4), True
        elif known.sum() >= c.min_inliers:
            idx = np.nonzero(known)[0]
            pts = np.array([self.points[t] for t in ids[idx].tolist()])
            # the front end has already rejected most outliers (a KLT frame reports every
            # landmark it followed): refine from the prediction, and fall back to RANSAC
            # only when that explains too few of them
            T_cw, inl = pnp_from_prediction(pts, obs.uv[idx], self.calib, inv(guess),
                                            c.pnp_reprojection_px, c.pnp_iterations,
                                            c.min_inliers, 0.5)
            if T_cw is not None and len(inl) >= c.min_inliers:
                T_new, inliers, tracked = inv(T_cw), idx[inl], True
        if not tracked and self.frames > 0:
            self.lost += 1
            LOG.warning('frame %d: tracking lost (%d known landmarks); continuing from the '
                        'constant-velocity prediction', obs.index, int(known.sum()))
        outlier = np.zeros(len(obs), bool)
        if tracked and self.frames > 0:
            outlier[np.nonzero(known)[0]] = True
            outlier[inliers] = False
        self.kept_ids = ids[~outlier]  # what continues or starts a landmark here
        t1 = time.perf_counter()
        # a tracked frame without stereo (``vo.klt_frames``) starts no landmark; when it is a
        # keyframe (interval, turn, weak tracking; vo.klt_keyframes: parallax too) its
        # observations of the window's landmarks are projection factors
        keyframe = self.mapper is not None and self._is_keyframe(
            T_new, ids[inliers], tracked, bool(np.isfinite(obs.u_right).any()))
        if keyframe:
            restart = outlier | ~self._stereo_consistent(obs, T_new) | (not tracked)
            self._pending = Keyframe(obs.index, T_new, ids, obs.uv, obs.u_right, stereo_ok,
                                     restart, tracked, obs.noise)
            self.kf_T, self.kf_frame = T_new, self.frames
            self.kf_ids = set(ids[inliers].tolist())
        self.motion.update(T_new, obs.stamp, tracked)
        self._update_points(obs, stereo_ok, outlier)
        self._offset_job = (raw, T_new, ids[inliers] if tracked else None)
        self.frames += 1
        timings = {**obs.timings, 'pnp': (t1 - t0) * 1e3}
        if not defer_mapping:
            timings['mapping'] = self.map_pending()
        return FrameResult(obs.index, obs.stamp, T_new.copy(), tracked, keyframe, len(inliers),
                           len(obs), timings)

    def _estimate_offset(self, raw: Observations, T: np.ndarray,
                         inlier_ids: Optional[np.ndarray]) -> None:
        """One two-frame estimate of the disparity offset (``vo.estimate_disparity_offset``):
        the landmarks that this frame's PnP kept and that had stereo in the pair's first
        frame, at most ``OFFSET_POINTS`` of them; until ``OFFSET_PAIRS`` estimates have
        entered.

        The pair's first frame is the latest of the last ``OFFSET_HISTORY`` tracked frames
        that has stereo and from which the camera has moved ``OFFSET_MIN_MOTION`` stereo
        baselines or more: with less, the motion's parallax is smaller than the stereo one,
        the offset is barely observable, and the disparities' noise alone biases the estimate
        (+0.15 to +0.22 px on the synthetic room, whose offset is 0). It is not older than the
        previous pair's second frame: pairs that overlap measure the same scene again and
        share its effect, which the fusion would count as independent evidence (on a 40-frame
        walk through the synthetic room, truth 0, three overlapping pairs at -0.7 to -1.5 px
        moved the value to -0.62 px; without the overlap it stays at 0 and the ATE is 1.3 mm
        instead of 2.8). On KITTI 06 and 01, whose every frame moves more than a baseline,
        the pairs are an extracted frame and the KLT frame after it (``vo.klt_frames: 1``); a
        slow camera (the room: 2-5 cm a frame against 0.11 m) pairs across a few frames.
        Pixels that KLT followed in a pair blurred against its noise
        (:data:`~hndesc_ros.types.SCORE_FOLLOWED_NOISY`) take no part."""
        if (not self.cfg.estimate_disparity_offset or inlier_ids is None
                or self.offset.pairs >= self.OFFSET_PAIRS):
            self._recent.clear()  # an untracked frame's pose would make a wrong pair
            return
        followed = raw.scores == SCORE_FOLLOWED_NOISY  # right u of noisy pixels: not here
        if followed.any():
            raw = raw.subset(~followed)
            inlier_ids = inlier_ids[np.isin(inlier_ids, raw.track_ids)]
        recent = list(self._recent)
        self._recent.append((raw, T))
        T_cw, p = inv(T), None
        for p_obs, T_p in reversed(recent):
            if not np.isfinite(p_obs.u_right).any():
                continue  # no stereo (a KLT pair): no point to measure the offset with
            T_10 = T_cw @ T_p  # that camera in this one's frame
            if np.linalg.norm(T_10[:3, 3]) >= self.OFFSET_MIN_MOTION * self.calib.baseline:
                p = p_obs
                break
        if p is None:
            return  # less temporal than stereo parallax: the estimate would follow the noise
        row_p = {t: i for i, t in enumerate(p.track_ids.tolist())}
        row_c = {t: i for i, t in enumerate(raw.track_ids.tolist())}
        pairs = np.array([(row_p[t], row_c[t]) for t in inlier_ids.tolist() if t in row_p],
                         np.int64).reshape(-1, 2)
        if len(pairs):  # stereo in the pair's first frame, at least 1 px of disparity
            disparity = p.uv[pairs[:, 0], 0] - (p.u_right[pairs[:, 0]] - self.offset.value)
            pairs = pairs[np.isfinite(disparity) & (disparity > 1.0)]
        if len(pairs) < self.cfg.min_inliers:
            return
        pairs = pairs[np.linspace(0, len(pairs) - 1, min(len(pairs), self.OFFSET_POINTS))
                      .astype(np.int64)]
        i0, i1 = pairs[:, 0], pairs[:, 1]
        # the next pair starts here or later: pairs that overlapped would measure one scene
        # twice (this pair's frames are spent even if its estimate fails)
        self._recent.clear()
        self._recent.append((raw, T))
        out = two_view_offset(p.uv[i0], p.u_right[i0], raw.uv[i1], raw.u_right[i1], self.calib,
                              T_10, self.offset.value, self.cfg.pixel_sigma,
                              iterations=4)
        if out is not None:
            offset, info, _, noise = out
            self.offset.add(offset, info, noise)

    def map_pending(self) -> float:
        """The mapping step of the latest frame: its keyframe (if it is one) to the mapper
        (inline: optimised now; background: queued), the finished updates applied, and its
        disparity-offset estimate. Returns the milliseconds it took."""
        t0 = time.perf_counter()
        keyframe, self._pending = self._pending, None  # submitted once, even if it fails
        if self.mapper is not None and keyframe is not None:
            self.mapper.submit(keyframe)
        before = None
        if self._offset_job is not None:
            job, self._offset_job = self._offset_job, None
            before = self.offset.value
            try:
                self._estimate_offset(*job)
            except Exception as exc:  # optional: a failure leaves the offset as it was
                LOG.warning('disparity offset estimate failed (%s); keeping %.3f px',
                            describe(exc), self.offset.value)
        if self.mapper is not None:
            self._apply(self.mapper.poll())
        if before is not None and self.offset.value != before:
            # after the mapper's points (made with the offset before), as the front end does
            self._move_points(self.offset.value - before)
        return (time.perf_counter() - t0) * 1e3

    def _move_points(self, change: float) -> None:
        """The PnP points after the disparity offset grew by ``change`` px: each moved along
        its ray from the latest camera to the depth its disparity there gives with the new
        offset (:func:`~hndesc_ros.vo.landmarks.with_disparity_change`)."""
        if not self.points:
            return
        ids = list(self.points)
        moved = with_disparity_change(np.array([self.points[t] for t in ids]), self.motion.T,
                                      change, self.calib)
        self.points = dict(zip(ids, moved))

    def finish(self) -> None:
        """Wait for the mapper to finish the submitted keyframes (end of a run)."""
        self.map_pending()
        if self.mapper is not None:
            self._apply(self.mapper.flush())

    def _update_points(self, obs: Observations, stereo_ok: np.ndarray,
                       outlier: np.ndarray) -> None:
        """World points for the next PnP: a new landmark's stereo triangulation at this pose
        (refined later by the mapper); PnP outliers are forgotten; landmarks unseen for
        ``vo.map_max_age`` frames are dropped."""
        cam = triangulate_stereo(obs.uv, obs.u_right, self.calib)
        world = transform_points(self.motion.T, cam)
        for i, t in enumerate(obs.track_ids.tolist()):
            if outlier[i]:
                self.points.pop(t, None)
            elif t not in self.points and stereo_ok[i]:
                self.points[t] = world[i]
            self.last_seen[t] = self.frames
        if self.frames % 10 == 0:
            old = [t for t, f in self.last_seen.items()
                   if self.frames - f > self.cfg.map_max_age]
            for t in old:
                self.points.pop(t, None)
                del self.last_seen[t]


class MonoOdometry:
    """Monocular back end. Every frame, the two-view motion from the previous frame (5-point
    essential matrix from track-id correspondences, refined on its inliers) is the initial
    guess. With ``vo.smoother`` (the default) the frame then enters a fixed-lag bundle
    adjustment over the last ``vo.mono_window`` frames (:class:`MonoSmoother`): a track seen in
    ``vo.min_track_length`` frames of the window whose first (in the window) and latest rays
    meet at ``vo.mono_min_parallax`` degrees or more becomes a landmark, each of its
    observations a projection factor, and the two-view motion stays in the graph as a loose
    factor. The pose reported is the newest frame's smoothed pose (causal: no frame waits for
    a later one). A frame without a two-view motion (blank, too few inliers) is counted as
    lost and continues at constant velocity (a loose factor: the landmarks it sees still
    place it).

    A camera standing still (or only turning) gives an essential matrix of noise: when a pure
    rotation explains the matches to within ``vo.still_parallax`` degrees of median
    parallax (:func:`~hndesc_ros.vo.geometry.rotation_parallax`), the frame is *stationary*:
    its motion is that rotation and no translation (with ground-truth scale: the known step
    along the last measured direction, a slow creep), held by a tight factor; it is tracked,
    not lost, and it does not change the step length that carries the scale.

    Scale: ``scale_fn`` gives the metres travelled per frame (ground-truth scale, the published
    monocular protocol) as a range factor. Without it the first step has unit length and the
    landmarks carry the scale from there (it drifts: evaluate with Sim(3) alignment; depths,
    e.g. ``vo.min_depth``, are then in units of the first step); without the smoother every
    step has unit length.

    A failure of the smoother (GTSAM's indeterminate system, or a pose that is not finite)
    never escapes: the smoother restarts at the frame from its guess (the last pose if the
    guess is not a rigid transform), and the restart is counted in ``resets``.

    Args:
        calib: pinhole calibration (baseline ignored).
        cfg: VOConfig (min_inliers, smoother, mono_window, mono_min_parallax,
            still_parallax, min_track_length, min_depth, pixel_sigma, huber_k).
        scale_fn: ``scale_fn(k)`` -> metres between frame k-1 and frame k (k counts processed
            frames from 0), or None.
    """

    ROTATION_SIGMA = np.radians(0.2)  # two-view motion factor: rotation per axis (rad)
    STEP_SIGMA = 0.2                  # ... translation per axis, as a share of the step,
    MIN_STEP_SIGMA = 0.05             # ... and at least this (m; a standing camera)
    STILL_SIGMA = 0.05                # stationary frame: translation sigma per axis, as a share
    #                                   of the last measured step (landmarks can still move it)
    LOST_SIGMAS = (np.radians(5.0), 1.0)  # constant-velocity factor after tracking loss
    GATE_PX = 2.0                     # a new landmark reprojects within this in every view
    AMBIGUOUS = 5.0                   # x vo.still_parallax: below, noise may explain a motion
    NOISE_RATIO = 3.0                 # ... if a pure rotation leaves < this x E's residual

    def __init__(self, calib: StereoCalib, cfg: Optional[VOConfig] = None,
                 scale_fn: Optional[Callable[[int], float]] = None):
        self.calib, self.cfg = calib, cfg or VOConfig()
        self.scale_fn = scale_fn
        self.prev: Optional[Observations] = None  # the reference: last frame with observations
        self.prev_k, self.prev_T = 0, np.eye(4)   # its frame number and pose then
        self.T = np.eye(4)
        self.velocity = np.eye(4)               # T_prev_cur of the latest frame
        self.direction = np.array([0.0, 0.0, 1.0])  # unit translation of the last measured step
        self.step = 1.0                         # length of the last measured step (map units)
        self.frames = 0
        self.lost = 0
        self.stationary = 0                     # frames taken as standing still
        self.standing = False                   # the latest tracked frame stood still
        self.resets = 0                         # smoother failures (re-started at the frame)
        self._restarted = False                 # the smoother restarted at this frame
        self._rebuilds = 0                      # rebuilds of the smoothers before this one
        self.smoother = None
        self.poses: Dict[int, np.ndarray] = {}  # frame -> T_world_cam, smoothed in the window
        self.tracks: Dict[int, list] = {}       # track id -> [(frame, (2,) uv)] in the window
        self.landmark_of: Dict[int, int] = {}   # track id -> smoother landmark key
        self.next_landmark = 0
        self.needs_gauge = True                 # unit scale: the next step fixes the unit
        if self.cfg.smoother:
            self._restart()

    @property
    def rebuilds(self) -> int:
        """Smoother failures recovered by eliminating the window anew (QR), not restarts."""
        return self._rebuilds + (self.smoother.rebuilds if self.smoother is not None else 0)

    def _restart(self) -> None:
        """A new, empty smoother (at start-up, and after a failure)."""
        from hndesc_ros.vo.smoother import MonoSmoother
        self._rebuilds = self.rebuilds
        self.smoother = MonoSmoother(self.calib, self.cfg.mono_window, self.cfg.pixel_sigma,
                                     self.cfg.huber_k)
        self.poses, self.tracks, self.landmark_of = {}, {}, {}
        self.needs_gauge = True

    def close(self) -> None:
        """Nothing runs in the background (the same interface as StereoOdometry)."""

    def finish(self) -> None:
        """Nothing to wait for."""

    def map_updates(self) -> list:
        """No map for the front end: always empty."""
        return []

    def map_pending(self) -> float:
        """No mapping step in the background (the same interface as StereoOdometry)."""
        return 0.0

    def process(self, obs: Observations, defer_mapping: bool = False) -> FrameResult:
        t0 = time.perf_counter()
        k, c = self.frames, self.cfg
        tracked, still, n_inl, motion, step, T_guess = True, False, 0, None, None, self.T
        if k > 0:
            step = self.scale_fn(k) if self.scale_fn else None
            ref = self.prev_k  # the reference: the last frame with observations
            # its length: known (ground-truth scale) or the last measured step per frame
            length = (sum(self.scale_fn(i) for i in range(ref + 1, k + 1)) if self.scale_fn
                      else self.step * (k - ref))
            T_cp = None
            if self.prev is not None:
                _, i0, i1 = np.intersect1d(self.prev.track_ids, obs.track_ids,
                                           return_indices=True)
                p0, p1 = self.prev.uv[i0].astype(np.float64), obs.uv[i1].astype(np.float64)
                if len(i0) >= c.min_inliers:
                    R_cp, parallax = rotation_parallax(p0, p1, self.calib)
                    still = parallax < c.still_parallax
                if not still:
                    T_cp, inl = essential_motion(p0, p1, self.calib)
                    n_inl = len(inl)
                    still = len(i0) >= c.min_inliers and self._unobservable(
                        parallax, T_cp, inl, p0, p1)
                if still:  # the translation is not observable: rotation only
                    n_inl = len(i0)
                    length = length if self.scale_fn else 0.0
                    T_pc = make_T(R_cp.T, self.direction * length)
                    sigma = max(self.STEP_SIGMA * length, self.STILL_SIGMA * self.step)
            if not still and (T_cp is None or n_inl < c.min_inliers):
                tracked = False
                self.lost += 1
                LOG.warning('frame %d: mono tracking lost (%d inliers)', obs.index, n_inl)
                # constant velocity; a lost frame in a stop stays (unless GT says it moved)
                guess_length = step if step is not None else (0.0 if self.standing
                                                              else self.step)
                T_guess = self.T @ self._with_length(self.velocity, guess_length)
                motion = self._loose(k - 1, self.T, T_guess)
            else:  # the motion since the reference (frames in between were blank or lost)
                if not still:
                    T_pc = self._with_length(inv(T_cp), length)
                    sigma = max(self.STEP_SIGMA * length, self.MIN_STEP_SIGMA)
                T_guess = self.poses.get(ref, self.prev_T) @ T_pc
                motion = (ref, T_pc, self.ROTATION_SIGMA, sigma)
        self.stationary += still
        if tracked:
            self.standing = still
        t1 = time.perf_counter()
        if self.smoother is None:
            T_prev, T_new = self.T, T_guess
        else:
            T_new = self._smooth(k, T_guess, motion, step, obs)
            T_prev = self.poses.get(k - 1, self.T)
        if motion is not None:
            self.velocity = inv(T_prev) @ T_new
            if tracked and not still and not self._restarted:  # a measured step
                t = self.velocity[:3, 3]
                norm = float(np.linalg.norm(t))
                if norm > 0.1 * self.step:  # a real step, not a near-stop's noise
                    self.direction = t / norm
                if self.smoother is not None and self.scale_fn is None:
                    self.step = max(norm, 1e-6)
                elif self.scale_fn is not None and step is not None and step > 0:
                    self.step = step
        self._restarted = False
        self.T = T_new
        if len(obs):  # a blank frame keeps the last reference (as the tracker does)
            self.prev, self.prev_k, self.prev_T = obs, k, T_new
        self.frames += 1
        t2 = time.perf_counter()
        return FrameResult(obs.index, obs.stamp, self.T.copy(), tracked, True, n_inl, len(obs),
                           {**obs.timings, 'essential': (t1 - t0) * 1e3,
                            'mapping': (t2 - t1) * 1e3})

    def _unobservable(self, parallax: float, T_cp: Optional[np.ndarray], inl: np.ndarray,
                      p0: np.ndarray, p1: np.ndarray) -> bool:
        """A small parallax (below ``AMBIGUOUS`` x ``vo.still_parallax``) that the keypoints'
        own noise could explain: the essential matrix failed on it (or kept under a quarter of
        the matches), or explains the matches barely better than a pure rotation (parallax
        below ``NOISE_RATIO`` x its median epipolar distance over all matches). Noisier
        keypoints (a low-resolution or vibrating camera) thus stand still at a larger parallax
        than ``vo.still_parallax``."""
        if parallax >= self.AMBIGUOUS * self.cfg.still_parallax:
            return False
        if T_cp is None or len(inl) < max(self.cfg.min_inliers, 0.25 * len(p0)):
            return True
        return parallax < self.NOISE_RATIO * epipolar_distance_deg(T_cp, p0, p1, self.calib)

    def _with_length(self, T: np.ndarray, length: float) -> np.ndarray:
        """A copy of the motion T with its translation scaled to ``length`` (along the last
        measured direction where T has none)."""
        T = T.copy()
        norm = np.linalg.norm(T[:3, 3])
        moved = norm > 1e-3 * self.step  # not just a stationary frame's rounding
        T[:3, 3] = T[:3, 3] * (length / norm) if moved else self.direction * length
        return T

    def _loose(self, f: int, T_f: np.ndarray, T_guess: np.ndarray):
        """A loose motion factor from frame f (at T_f) to the guess: tracking loss, or a
        reference that is no longer in the smoother."""
        T = inv(T_f) @ T_guess
        return (f, T, self.LOST_SIGMAS[0],
                max(self.LOST_SIGMAS[1] * float(np.linalg.norm(T[:3, 3])), self.MIN_STEP_SIGMA))

    def _recover(self, k: int, T_guess: np.ndarray, obs: Observations, exc: Exception) -> None:
        """The smoother failed at frame k: count it, and start a new one at this frame from
        its guess (the last good pose if the guess is not a rigid transform), with the prior
        that makes the new window well posed and the current step as its unit of scale."""
        self.resets += 1
        self._restarted = True  # this frame's pose says nothing about the step
        LOG.warning('frame %d: mono smoother failed (%s); restarted at this frame',
                    obs.index, describe(exc))
        T_start = T_guess if is_pose(T_guess) else self.T
        self._restart()
        self.smoother.add_frame(k, T_start, None, None, {}, [])
        self.poses[k] = T_start
        self.tracks = {t: [(k, p)] for t, p in zip(obs.track_ids.tolist(),
                                                   obs.uv.astype(np.float64))}

    def _smooth(self, k: int, T_guess: np.ndarray, motion, step: Optional[float],
                obs: Observations) -> np.ndarray:
        """Frame k into the fixed-lag bundle adjustment -> its smoothed T_world_cam."""
        cfg, sm = self.cfg, self.smoother
        oldest = k - cfg.mono_window + 1      # the oldest frame still in the window after k
        if sm.latest is None:
            motion = None                     # the first frame of a smoother: fixed
        else:
            if motion[0] not in self.poses or motion[0] < oldest:  # reference gone
                motion = self._loose(k - 1, self.poses[k - 1], T_guess)
            moved = np.linalg.norm(T_guess[:3, 3] - self.poses[sm.latest][:3, 3])
            if (step is None and self.scale_fn is None and self.needs_gauge
                    and moved > sm.MIN_RANGE):  # not on a standing frame: its length is 0
                step = self.step              # the monocular gauge: this step sets the unit
                self.needs_gauge = False
        self.poses[k] = T_guess
        rows, new, candidates = [], {}, []
        for t, p in zip(obs.track_ids.tolist(), obs.uv.astype(np.float64)):
            track = self.tracks.setdefault(t, [])
            track.append((k, p))
            if t in self.landmark_of:
                j = self.landmark_of[t]
                if sm.landmark_time.get(j, -1) >= oldest:
                    rows.append((k, j, p[0], p[1]))
                    continue
                del self.landmark_of[t]       # its landmark left the window: a new one
            views = [(f, q) for f, q in track if f >= oldest]
            if len(views) >= cfg.min_track_length:
                candidates.append((t, views))
        if candidates:  # the parallax of all candidate tracks at once: most are too far
            first = [views[0] for _, views in candidates]
            par = ray_parallax_deg(np.array([q for _, q in first]),
                                   np.array([self.poses[f] for f, _ in first]),
                                   np.array([views[-1][1] for _, views in candidates]),
                                   T_guess, self.calib)
            for (t, views), ok in zip(candidates, par >= cfg.mono_min_parallax):
                if not ok:
                    continue
                X = triangulate_track(np.array([q for _, q in views]),
                                      np.array([self.poses[f] for f, _ in views]), self.calib,
                                      self.GATE_PX, cfg.min_depth)
                if X is not None:
                    j = self.landmark_of[t] = self.next_landmark
                    self.next_landmark += 1
                    new[j] = X
                    rows += [(f, j, q[0], q[1]) for f, q in views]
        try:
            poses = sm.add_frame(k, T_guess, motion, step, new, rows)
            if not all(is_pose(T) for T in poses.values()):
                raise RuntimeError('a smoothed pose is not a rigid transform')
            self.poses.update(poses)
        except Exception as exc:  # GTSAM raises RuntimeError; nothing may escape
            self._recover(k, T_guess, obs, exc)
        for f in [f for f in self.poses if f < oldest]:
            del self.poses[f]
        if k % 10 == 0:  # forget what left the window: its landmarks take no more factors
            for t in list(self.tracks):
                views = [v for v in self.tracks[t] if v[0] >= oldest]
                if views:
                    self.tracks[t] = views
                else:  # should the track resume, it becomes a new landmark (a new key)
                    del self.tracks[t]
                    self.landmark_of.pop(t, None)
        return self.poses[k]
