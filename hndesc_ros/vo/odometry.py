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
from typing import Callable, Dict, List, Optional

import numpy as np

from hndesc_ros.config import VOConfig
from hndesc_ros.errors import CalibrationError
from hndesc_ros.se3 import inv, rotation_angle, transform_points
from hndesc_ros.types import FrameResult, Observations, StereoCalib
from hndesc_ros.vo.geometry import (ConstantVelocity, essential_motion, pnp_from_prediction,
                                    stereo_depth_ok, triangulate_stereo)
from hndesc_ros.vo.mapper import Keyframe, MapUpdate, make_mapper

LOG = logging.getLogger(__name__)


def load_backend(cfg: VOConfig) -> None:
    """Import what the odometry of ``cfg`` will need (GTSAM for inline mapping, about 0.1-0.5 s
    on a busy machine), so that a long-running node pays it at start-up rather than inside
    its first frame's latency."""
    if not cfg.mono and cfg.smoother and not cfg.async_mapping:
        from hndesc_ros.vo.smoother import _gtsam
        _gtsam()


class StereoOdometry:
    """Stereo VO back end (no images: only observations with landmark ids).

    Args:
        calib: rectified stereo calibration.
        cfg: VOConfig (PnP thresholds, keyframe policy, smoother window and noise).
    """

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
        self.kf_frame = 0
        self.kf_ids: set = set()                 # landmarks tracked in the last keyframe
        self.frames = 0
        self.lost = 0
        self._shared: List[MapUpdate] = []
        self._pending: Optional[Keyframe] = None  # keyframe of a deferred mapping step

    def close(self) -> None:
        """Stop the background mapper (if any)."""
        if self.mapper is not None:
            self.mapper.close()

    # ------------------------------------------------------------------ keyframes
    def _is_keyframe(self, T: np.ndarray, inlier_ids: np.ndarray, tracked: bool) -> bool:
        c = self.cfg
        if self.kf_T is None or not tracked or c.keyframe_min_translation <= 0:
            return True
        rel = inv(self.kf_T) @ T
        still = len(self.kf_ids.intersection(inlier_ids.tolist())) if self.kf_ids else 0
        return (np.linalg.norm(rel[:3, 3]) >= c.keyframe_min_translation
                or rotation_angle(rel[:3, :3]) >= np.deg2rad(c.keyframe_min_rotation)
                or self.frames - self.kf_frame >= c.keyframe_max_interval
                or len(inlier_ids) < c.keyframe_min_tracks
                or still < c.keyframe_track_ratio * len(self.kf_ids))

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
        ok[idx] = (pc[:, 2] > 0) & ~(err > self.cfg.stereo_gate_px)  # NaN counts as consistent
        return ok

    def _apply(self, updates: List[MapUpdate]) -> None:
        """Take the mapper's refined landmarks (and queue them for the front end when
        ``vo.share_map``: nobody drains the queue otherwise)."""
        if self.cfg.share_map:
            self._shared += updates
        for u in updates:
            self.keyframe_poses[u.index] = u.T_world_cam
            for t, p in zip(u.track_ids.tolist(), u.points):
                if t in self.points:   # a landmark that PnP rejected since stays out
                    self.points[t] = p

    def map_updates(self) -> List[MapUpdate]:
        """Refined landmarks that arrived since the last call, to share with the front end
        (always empty without ``vo.share_map``)."""
        out, self._shared = self._shared, []
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
        if self._pending is not None:  # a deferred mapping step the caller did not run
            self.map_pending()
        t0 = time.perf_counter()
        c = self.cfg
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
            # the front end has already rejected its outliers: refine from the prediction,
            # and fall back to RANSAC only when that explains too few of them
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
        t1 = time.perf_counter()
        keyframe = self.mapper is not None and self._is_keyframe(T_new, ids[inliers], tracked)
        if keyframe:
            restart = outlier | ~self._stereo_consistent(obs, T_new) | (not tracked)
            self._pending = Keyframe(obs.index, T_new, ids, obs.uv, obs.u_right, stereo_ok,
                                     restart, tracked)
            self.kf_T, self.kf_frame = T_new, self.frames
            self.kf_ids = set(ids[inliers].tolist())
        self.motion.update(T_new, obs.stamp, tracked)
        self._update_points(obs, stereo_ok, outlier)
        self.frames += 1
        timings = {**obs.timings, 'pnp': (t1 - t0) * 1e3}
        if not defer_mapping:
            timings['mapping'] = self.map_pending()
        return FrameResult(obs.index, obs.stamp, T_new.copy(), tracked, keyframe, len(inliers),
                           len(obs), timings)

    def map_pending(self) -> float:
        """The mapping step of the latest frame: its keyframe (if it is one) to the mapper
        (inline: optimised now; background: queued) and the finished updates applied.
        Returns the milliseconds it took."""
        t0 = time.perf_counter()
        keyframe, self._pending = self._pending, None  # submitted once, even if it fails
        if self.mapper is not None:
            if keyframe is not None:
                self.mapper.submit(keyframe)
            self._apply(self.mapper.poll())
        return (time.perf_counter() - t0) * 1e3

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
    """Monocular back end: essential matrix between consecutive frames (5-point RANSAC) from
    track-id correspondences. Translation has unit length per frame unless ``scale_fn`` gives
    the metres travelled (ground-truth scale, the published monocular protocol); evaluate
    unit-scale runs with Sim(3) alignment.

    Args:
        calib: pinhole calibration (baseline ignored).
        cfg: VOConfig (min_inliers).
        scale_fn: ``scale_fn(k)`` -> metres between frame k-1 and frame k (k counts processed
            frames from 0), or None.
    """

    def __init__(self, calib: StereoCalib, cfg: Optional[VOConfig] = None,
                 scale_fn: Optional[Callable[[int], float]] = None):
        self.calib, self.cfg = calib, cfg or VOConfig()
        self.scale_fn = scale_fn
        self.prev: Optional[Observations] = None
        self.T = np.eye(4)
        self.frames = 0
        self.lost = 0

    def close(self) -> None:
        """Nothing runs in the background (the same interface as StereoOdometry)."""

    def finish(self) -> None:
        """Nothing to wait for."""

    def map_updates(self) -> list:
        """No map: always empty."""
        return []

    def map_pending(self) -> float:
        """No mapping step (the same interface as StereoOdometry)."""
        return 0.0

    def process(self, obs: Observations, defer_mapping: bool = False) -> FrameResult:
        t0 = time.perf_counter()
        tracked, n_inl = True, 0
        if self.prev is not None:
            _, i0, i1 = np.intersect1d(self.prev.track_ids, obs.track_ids, return_indices=True)
            T_cp, inl = essential_motion(self.prev.uv[i0].astype(np.float64),
                                         obs.uv[i1].astype(np.float64), self.calib)
            n_inl = len(inl)
            if T_cp is None or n_inl < self.cfg.min_inliers:
                tracked = False
                self.lost += 1
                LOG.warning('frame %d: mono tracking lost (%d inliers)', obs.index, n_inl)
            else:
                T_pc = inv(T_cp)
                T_pc[:3, 3] *= self.scale_fn(self.frames) if self.scale_fn else 1.0
                self.T = self.T @ T_pc
        if len(obs):  # a blank frame keeps the last reference (as the tracker does)
            self.prev = obs
        self.frames += 1
        return FrameResult(obs.index, obs.stamp, self.T.copy(), tracked, True, n_inl, len(obs),
                           {**obs.timings, 'essential': (time.perf_counter() - t0) * 1e3})
