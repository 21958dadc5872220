"""Back end: PnP initialisation from tracks, keyframes, landmarks, GTSAM smoothing.

Input per frame: :class:`~hndesc_ros.vo.tracker.Observations`. Output: the camera pose
``T_world_cam`` (world = first camera frame), and per-frame statistics. Tracking loss (too few
PnP inliers, blank frame) re-initialises from the last good pose with a constant-velocity guess
and is counted, never raised.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np

from hndesc_ros.config import VOConfig
from hndesc_ros.types import StereoCalib
from hndesc_ros.vo.geometry import inv, rotation_angle, solve_pnp, triangulate_stereo
from hndesc_ros.vo.tracker import Observations

LOG = logging.getLogger(__name__)


@dataclass
class FrameResult:
    """What the back end reports for one frame."""

    index: int
    stamp: float
    T_world_cam: np.ndarray
    tracked: bool                 # pose from PnP (False: predicted after tracking loss)
    keyframe: bool
    inliers: int
    observations: int
    timings: Dict[str, float] = field(default_factory=dict)


class StereoOdometry:
    """Stereo VO back end (no images: only tracked observations).

    Args:
        calib: rectified stereo calibration.
        cfg: VOConfig (PnP thresholds, window, keyframe policy, noise).
    """

    def __init__(self, calib: StereoCalib, cfg: Optional[VOConfig] = None):
        if calib.baseline <= 0:
            from hndesc_ros.errors import CalibrationError
            raise CalibrationError('stereo odometry needs a positive baseline')
        self.calib, self.cfg = calib, cfg or VOConfig()
        self.smoother = None
        self._new_smoother()
        self.T = np.eye(4)                      # latest T_world_cam
        self.velocity = np.eye(4)               # T_prev_cur of the last motion
        self.points: Dict[int, np.ndarray] = {}  # track id -> world point (for PnP)
        self.segment: Dict[int, int] = {}       # track id -> landmark id in the smoother
        self.pending: Dict[int, List] = {}      # landmark id -> [(kf, ul, ur, v, world pt)]
        self.next_landmark = 0
        self.kf = -1                            # last keyframe number
        self.kf_T = np.eye(4)
        self.frames = 0
        self.lost = 0

    def _new_smoother(self):
        from hndesc_ros.vo.smoother import StereoSmoother
        c = self.cfg
        self.smoother = StereoSmoother(self.calib, c.window_size, c.pixel_sigma, c.huber_k,
                                       c.smoother_iterations) if c.smoother else None

    # ------------------------------------------------------------------ helpers
    def _world_points(self, obs: Observations, T: np.ndarray) -> np.ndarray:
        """(M, 3) stereo-triangulated observations in the world, camera at T_world_cam."""
        cam = triangulate_stereo(obs.uv, obs.u_right, self.calib)
        return cam @ T[:3, :3].T + T[:3, 3]

    def _stereo_valid(self, obs: Observations) -> np.ndarray:
        disp = obs.uv[:, 0] - obs.u_right
        ok = np.isfinite(obs.u_right) & (disp > 0.1)
        z = np.where(ok, self.calib.fx * self.calib.baseline / np.where(ok, disp, 1), np.inf)
        return ok & (z >= self.cfg.min_depth) & (z <= self.cfg.max_depth)

    def _is_keyframe(self, T: np.ndarray, n_tracked: int) -> bool:
        c = self.cfg
        if self.kf < 0 or c.keyframe_min_translation <= 0:
            return True
        rel = inv(self.kf_T) @ T
        return (np.linalg.norm(rel[:3, 3]) >= c.keyframe_min_translation
                or rotation_angle(rel[:3, :3]) > np.deg2rad(5.0)
                or n_tracked < c.keyframe_min_tracks)

    # ------------------------------------------------------------------ main
    def process(self, obs: Observations) -> FrameResult:
        """Estimate the pose of one frame from its tracked observations."""
        t0 = time.perf_counter()
        stereo_ok = self._stereo_valid(obs)
        guess = self.T @ self.velocity
        known = np.array([t in self.points for t in obs.track_ids], bool)
        T_new, inliers, tracked = guess, np.zeros(0, np.int64), False
        if self.frames == 0:
            T_new, tracked = np.eye(4), True
        elif known.sum() >= self.cfg.min_inliers:
            idx = np.nonzero(known)[0]
            pts = np.array([self.points[t] for t in obs.track_ids[idx]])
            T_cw, inl = solve_pnp(pts, obs.uv[idx], self.calib, inv(guess),
                                  self.cfg.pnp_reprojection_px, self.cfg.pnp_iterations)
            if T_cw is not None and len(inl) >= self.cfg.min_inliers:
                T_new, inliers, tracked = inv(T_cw), idx[inl], True
        if not tracked and self.frames > 0:
            self.lost += 1
            LOG.warning('frame %d: tracking lost (%d known tracks); re-initialising from the '
                        'last good pose', obs.index, int(known.sum()))
        t1 = time.perf_counter()
        # tracks that PnP rejected restart as new landmarks
        outlier = np.zeros(len(obs), bool)
        if tracked and self.frames > 0:
            outlier[np.nonzero(known)[0]] = True
            outlier[inliers] = False
        keyframe = self._is_keyframe(T_new, len(inliers)) or not tracked
        T_opt = T_new
        if keyframe:
            T_opt = self._add_keyframe(obs, T_new, stereo_ok, outlier, tracked)
        t2 = time.perf_counter()
        if self.frames > 0:
            self.velocity = inv(self.T) @ T_opt if tracked else self.velocity
        self.T = T_opt
        # world points for the next PnP: landmarks' smoothed estimates, else fresh stereo
        self._update_points(obs, stereo_ok, outlier, keep_old=not tracked)
        self.frames += 1
        res = FrameResult(obs.index, obs.stamp, T_opt.copy(), tracked, keyframe, len(inliers),
                          len(obs), {**obs.timings, 'pnp': (t1 - t0) * 1e3,
                                     'smoother': (t2 - t1) * 1e3})
        return res

    def _update_points(self, obs: Observations, stereo_ok: np.ndarray, outlier: np.ndarray,
                       keep_old: bool = False):
        """World points for the next PnP. After a lost frame the old points are kept, so the
        next frame can relocalise against them."""
        world = self._world_points(obs, self.T)
        if not keep_old:
            alive = set(obs.track_ids.tolist())
            self.points = {t: p for t, p in self.points.items() if t in alive}
        for i, t in enumerate(obs.track_ids):
            lm = self.segment.get(t)
            est = (self.smoother.landmark(lm) if self.smoother is not None and lm is not None
                   else None)
            if est is not None:
                self.points[t] = est
            elif stereo_ok[i]:
                self.points[t] = world[i]
            elif outlier[i]:
                self.points.pop(t, None)

    def _stereo_consistent(self, obs: Observations, T: np.ndarray) -> np.ndarray:
        """(M,) bool: the track's known world point reprojects into this stereo observation
        (u_left, u_right, v) within the gate; True for tracks without a known point."""
        gate = self.cfg.stereo_gate_px
        ok = np.ones(len(obs), bool)
        idx = [i for i, t in enumerate(obs.track_ids) if t in self.points]
        if not idx:
            return ok
        idx = np.array(idx)
        pw = np.array([self.points[t] for t in obs.track_ids[idx]])
        Tcw = inv(T)
        pc = pw @ Tcw[:3, :3].T + Tcw[:3, 3]
        c = self.calib
        z = np.maximum(pc[:, 2], 1e-6)
        ul = c.fx * pc[:, 0] / z + c.cx
        ur = c.fx * (pc[:, 0] - c.baseline) / z + c.cx
        v = c.fy * pc[:, 1] / z + c.cy
        err = np.maximum.reduce([np.abs(ul - obs.uv[idx, 0]), np.abs(ur - obs.u_right[idx]),
                                 np.abs(v - obs.uv[idx, 1])])
        ok[idx] = (pc[:, 2] > 0) & ~(err > gate)  # NaN (no stereo) counts as consistent
        return ok

    def _add_keyframe(self, obs, T_new, stereo_ok, outlier, tracked) -> np.ndarray:
        self.kf += 1
        k = self.kf
        if self.smoother is None:
            self.kf_T = T_new
            return T_new
        sm = self.smoother
        new_lms, factors = {}, []
        world = self._world_points(obs, T_new)
        consistent = self._stereo_consistent(obs, T_new)
        for i, t in enumerate(obs.track_ids):
            if not stereo_ok[i]:
                continue
            lm = self.segment.get(t)
            if lm is None or outlier[i] or not tracked or not consistent[i] or (
                    lm not in self.pending and not sm.landmark_alive(lm)):
                lm = self.next_landmark
                self.next_landmark += 1
                self.segment[t] = lm
                self.pending[lm] = []
            row = (k, float(obs.uv[i, 0]), float(obs.u_right[i]), float(obs.uv[i, 1]))
            if lm in self.pending:
                buf = [r for r in self.pending[lm] if sm.pose_alive(r[0])] + [row + (world[i],)]
                cap = self.cfg.max_new_landmarks
                if len(buf) >= self.cfg.min_track_length and (not cap or len(new_lms) < cap):
                    new_lms[lm] = buf[0][4]
                    factors += [(r[0], lm, r[1], r[2], r[3]) for r in buf]
                    del self.pending[lm]
                else:
                    self.pending[lm] = buf
            else:
                factors.append((k, lm, row[1], row[2], row[3]))
        # forget the tracks that ended, and their pending landmarks
        current = set(obs.track_ids.tolist())
        self.segment = {t: lm for t, lm in self.segment.items() if t in current}
        alive = set(self.segment.values())
        self.pending = {lm: b for lm, b in self.pending.items() if lm in alive}
        # a keyframe without enough stereo factors (tracking loss, window restart) is tied to
        # its PnP / predicted pose by a loose prior so the system stays determinate
        prior = None if tracked and len(factors) >= 3 * self.cfg.min_inliers else 0.5
        try:
            T_opt = sm.add_keyframe(k, T_new, new_lms, factors, prior_sigma=prior)
        except RuntimeError as exc:  # GTSAM numerical failure: restart the window here
            LOG.warning('keyframe %d: smoother failed (%s); restarting the window', k, exc)
            self._new_smoother()
            self.segment, self.pending = {}, {}
            self.kf = 0
            self.smoother.add_keyframe(0, T_new, {}, [], prior_sigma=None)
            T_opt = T_new
        self.kf_T = T_opt
        return T_opt


class MonoOdometry:
    """Monocular back end on tracked observations: essential matrix between consecutive frames
    (5-point RANSAC) from track-id correspondences; translation has unit length per frame
    (scale is unobservable), so evaluate with Sim(3) alignment."""

    def __init__(self, calib: StereoCalib, cfg: Optional[VOConfig] = None):
        self.calib, self.cfg = calib, cfg or VOConfig()
        self.prev: Optional[Observations] = None
        self.T = np.eye(4)
        self.lost = 0

    def process(self, obs: Observations) -> FrameResult:
        from hndesc_ros.vo.geometry import essential_motion
        t0 = time.perf_counter()
        tracked, n_inl = True, 0
        if self.prev is not None:
            common, i0, i1 = np.intersect1d(self.prev.track_ids, obs.track_ids,
                                            return_indices=True)
            T_cp, inl = essential_motion(self.prev.uv[i0].astype(np.float64),
                                         obs.uv[i1].astype(np.float64), self.calib)
            n_inl = len(inl)
            if T_cp is None or n_inl < self.cfg.min_inliers:
                tracked = False
                self.lost += 1
            else:
                self.T = self.T @ inv(T_cp)
        self.prev = obs
        res = FrameResult(obs.index, obs.stamp, self.T.copy(), tracked, True, n_inl, len(obs),
                          {**obs.timings, 'essential': (time.perf_counter() - t0) * 1e3})
        return res
