"""Mapping: keyframes, their landmark observations and new landmarks into the GTSAM fixed-lag
smoother; refined landmark positions and keyframe poses come back as :class:`MapUpdate`.

:class:`Mapper` is the mapping step itself (deterministic, in the caller's thread).
:class:`AsyncMapper` runs the same :class:`Mapper` in a background *process*: GTSAM's Python
bindings hold the GIL while they optimise, so a thread would stall the tracker, and on two cores
a process lets tracking and mapping run at the same time. Both offer ``submit`` / ``poll`` /
``flush`` / ``close``; :func:`make_mapper` picks one from ``vo.async_mapping``.
"""
from __future__ import annotations

import logging
import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np

from hndesc_ros.config import VOConfig
from hndesc_ros.errors import describe
from hndesc_ros.se3 import is_pose, transform_points
from hndesc_ros.types import StereoCalib
from hndesc_ros.vo.geometry import triangulate_stereo

LOG = logging.getLogger(__name__)


@dataclass
class Keyframe:
    """A keyframe handed to the mapper.

    Attributes:
        index: frame index; T_world_cam: (4, 4) pose from tracking (the initial guess).
        track_ids: (M,) int64; uv: (M, 2); u_right: (M,) NaN without stereo.
        stereo_ok: (M,) bool, usable stereo depth.
        restart: (M,) bool, start a new landmark for this id (PnP outlier, inconsistent with
            its landmark, or the frame was not tracked).
        tracked: the pose came from PnP (False: prediction after tracking loss).
        noise: (M,) localisation noise in units of ``vo.pixel_sigma`` (None: all 1).
    """

    index: int
    T_world_cam: np.ndarray
    track_ids: np.ndarray
    uv: np.ndarray
    u_right: np.ndarray
    stereo_ok: np.ndarray
    restart: np.ndarray
    tracked: bool
    noise: Optional[np.ndarray] = None


@dataclass
class MapUpdate:
    """What the mapper returns for one keyframe.

    Attributes:
        index: frame index of the keyframe; T_world_cam: (4, 4) its optimised pose.
        track_ids: (K,) int64 ids whose landmark is in the window; points: (K, 3) world.
        reset: the smoother failed on this keyframe and its window restarted here.
        rebuilt: iSAM2 failed on this keyframe and the window was eliminated anew (QR).
        disparity_offset: px the back end removed from right u when it shared this update
            (set by :meth:`StereoOdometry.map_updates`; None from the mapper itself).
    """

    index: int
    T_world_cam: np.ndarray
    track_ids: np.ndarray
    points: np.ndarray
    reset: bool = False
    disparity_offset: Optional[float] = None
    rebuilt: bool = False


class Mapper:
    """Keyframes -> GTSAM fixed-lag smoother (:class:`~hndesc_ros.vo.smoother.StereoSmoother`).

    A track id maps to a smoother landmark (a *segment*); the landmark enters the graph once it
    has ``vo.min_track_length`` stereo observations in live keyframes, and a new segment starts
    when the front end flags the observation (``restart``) or the old landmark has left the
    window.
    """

    def __init__(self, calib: StereoCalib, cfg: Optional[VOConfig] = None):
        self.calib, self.cfg = calib, cfg or VOConfig()
        self._done: List[MapUpdate] = []
        self.resets = 0                       # smoother failures (window restarted)
        self.last_pose = np.eye(4)            # the latest optimised keyframe pose
        self._reset()

    def _reset(self) -> None:
        from hndesc_ros.vo.smoother import StereoSmoother
        c = self.cfg
        self.smoother = StereoSmoother(self.calib, c.window_size, c.pixel_sigma, c.huber_k,
                                       c.smoother_iterations)
        self.segment: Dict[int, int] = {}   # track id -> landmark id in the smoother
        # landmark id -> [(kf, ul, ur, v, noise, world point)]; ur NaN, point None: no stereo
        self.pending: Dict[int, List] = {}
        self.next_landmark = 0
        self.kf = -1

    def add_keyframe(self, kf: Keyframe) -> MapUpdate:
        """Insert one keyframe, optimise, return the refined window."""
        self.kf += 1
        k, sm, c = self.kf, self.smoother, self.cfg
        world = transform_points(kf.T_world_cam,
                                 triangulate_stereo(kf.uv, kf.u_right, self.calib))
        noise = (np.ones(len(kf.track_ids)) if kf.noise is None else kf.noise).tolist()
        # plain Python values: the loop below runs once per observation (hundreds a keyframe)
        ids, stereo_ok, restart = (kf.track_ids.tolist(), kf.stereo_ok.tolist(),
                                   kf.restart.tolist())
        uv, u_right = kf.uv.tolist(), kf.u_right.tolist()
        # a pose older than this has left the window; so has a landmark stamped no later
        oldest = -1 if sm.latest is None else sm.latest - sm.window
        stamps, pending, segment = sm.landmark_time, self.pending, self.segment
        new_lms, factors = {}, []
        for i, t in enumerate(ids):
            stereo = stereo_ok[i]
            lm = segment.get(t)
            alive = lm is not None and (lm in pending or stamps.get(lm, oldest) > oldest)
            if not stereo:  # a projection factor, for a landmark that has begun with stereo
                if restart[i]:  # an outlier: the track's next stereo row starts anew
                    segment.pop(t, None)
                if restart[i] or not alive:
                    continue
            elif restart[i] or not alive:
                lm = self.next_landmark
                self.next_landmark += 1
                segment[t] = lm
                pending[lm] = []
            row = (k, uv[i][0], u_right[i] if stereo else np.nan, uv[i][1], noise[i])
            if lm in pending:
                buf = [r for r in pending[lm] if r[0] > oldest]
                buf.append(row + ((world[i] if stereo else None),))
                stereo_rows = [r for r in buf if r[5] is not None]
                cap = c.max_new_landmarks
                if len(stereo_rows) >= c.min_track_length and (not cap or len(new_lms) < cap):
                    new_lms[lm] = stereo_rows[0][5]
                    factors += [(r[0], lm) + r[1:5] for r in buf]
                    del pending[lm]
                elif stereo_rows:
                    pending[lm] = buf
                else:  # its stereo rows left the window: nothing to start it from
                    del pending[lm]
            else:
                factors.append((k, lm) + row[1:])
        # a keyframe without enough stereo factors (tracking loss, window restart) is tied to
        # its tracked / predicted pose by a loose prior so the system stays determinate. The
        # run's first keyframe is one (its landmarks enter with later keyframes), so the
        # window's gauge is held loosely from the start, not by the smoother's fixed
        # first-pose prior: fixing it measured worse on the drawn copies of 06 and 01, and the
        # loose gauge is why iSAM2's Cholesky can fail (smoother._FixedLag._rebuild;
        # docs/history.md, eighteenth session)
        prior = None if kf.tracked and len(factors) >= 3 * c.min_inliers else 0.5
        reset, rebuilds = False, sm.rebuilds
        try:
            T_opt = sm.add_keyframe(k, kf.T_world_cam, new_lms, factors, prior_sigma=prior)
            if not is_pose(T_opt):
                raise RuntimeError('the optimised pose is not a rigid transform')
            self._forget()
            est = self.smoother.landmarks(self.segment.values())
            self.last_pose = T_opt
        except Exception as exc:  # nothing may escape (GTSAM raises RuntimeError)
            # a numerical failure (an indeterminate system): a new window starts at this
            # keyframe from its tracked pose (the last optimised one if that is not a pose),
            # fixed by the first-pose prior, so it is well posed
            LOG.warning('keyframe %d: smoother failed (%s); restarting the window', k,
                        describe(exc))
            T_opt = kf.T_world_cam if is_pose(kf.T_world_cam) else self.last_pose
            self._reset()
            self.kf = 0
            self.smoother.add_keyframe(0, T_opt, {}, [], prior_sigma=None)
            self.resets += 1
            reset, est = True, {}
        refined = [(t, est[lm]) for t, lm in self.segment.items() if lm in est]
        return MapUpdate(kf.index, T_opt, np.array([t for t, _ in refined], np.int64),
                         np.array([p for _, p in refined], float).reshape(-1, 3), reset,
                         rebuilt=not reset and sm.rebuilds > rebuilds)

    def _forget(self) -> None:
        """Drop segments whose landmark has left the window and pending rows that can no
        longer enter it."""
        sm = self.smoother
        # rows are appended in keyframe order: a buffer lives while its last row does (its
        # dead first rows are dropped when the landmark is next observed)
        self.pending = {lm: b for lm, b in self.pending.items() if sm.pose_alive(b[-1][0])}
        alive = set(sm.alive_landmarks(self.segment.values()))
        self.segment = {t: lm for t, lm in self.segment.items()
                        if lm in self.pending or lm in alive}

    # the interface shared with AsyncMapper
    def submit(self, kf: Keyframe) -> None:
        """Map the keyframe now; its update is returned by the next poll."""
        self._done.append(self.add_keyframe(kf))

    def poll(self) -> List[MapUpdate]:
        done, self._done = self._done, []
        return done

    def flush(self) -> List[MapUpdate]:
        return self.poll()

    def close(self) -> None:
        pass


class AsyncMapper:
    """:class:`Mapper` in a background process (``python -m hndesc_ros.vo.mapper``, started
    once, at construction; keyframes and updates travel pickled over its stdin / stdout).

    ``submit`` does not wait for the optimisation (only for the pipe, when several keyframes
    are queued); ``poll`` returns the updates finished so far;
    ``flush`` waits for all submitted keyframes. If the process dies, mapping continues inline
    (logged once).
    """

    def __init__(self, calib: StereoCalib, cfg: Optional[VOConfig] = None):
        self.calib, self.cfg = calib, cfg or VOConfig()
        self.proc = subprocess.Popen([sys.executable, '-m', 'hndesc_ros.vo.mapper'],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.results: queue.Queue = queue.Queue()
        self.pending = 0
        self.fallback: Optional[Mapper] = None
        self._send((self.calib, self.cfg))
        self.reader = threading.Thread(target=self._read, name='hndesc-mapper-reader',
                                       daemon=True)
        self.reader.start()

    def _send(self, obj) -> bool:
        try:
            pickle.dump(obj, self.proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            self.proc.stdin.flush()
            return True
        except (BrokenPipeError, OSError, ValueError):
            return False

    def _read(self) -> None:
        while True:
            try:
                self.results.put(pickle.load(self.proc.stdout))
            except Exception:  # EOF, a broken pipe or a bad message: the worker is gone
                self.results.put(None)
                return

    def _die(self) -> None:
        LOG.error('mapper process ended (exit %s); mapping continues inline', self.proc.poll())
        self.fallback, self.pending = Mapper(self.calib, self.cfg), 0

    def submit(self, kf: Keyframe) -> None:
        if self.fallback is None and not self._send(kf):
            self._die()
        if self.fallback is not None:
            return self.fallback.submit(kf)
        self.pending += 1

    def _collect(self, block: bool) -> List[MapUpdate]:
        if self.fallback is not None:
            return self.fallback.poll()
        out = []
        while self.pending:
            try:
                upd = self.results.get(block, timeout=1.0 if block else None)
            except queue.Empty:
                if block and self.reader.is_alive():
                    continue
                break
            if upd is None:
                self._die()
                break
            out.append(upd)
            self.pending -= 1
        return out

    def poll(self) -> List[MapUpdate]:
        return self._collect(False)

    def flush(self) -> List[MapUpdate]:
        return self._collect(True)

    def close(self) -> None:
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(0.5)  # within the nodes' teardown deadline (ros/common.py)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def make_mapper(calib: StereoCalib, cfg: VOConfig):
    """Mapper (inline, deterministic) or AsyncMapper, from ``cfg.async_mapping``."""
    return AsyncMapper(calib, cfg) if cfg.async_mapping else Mapper(calib, cfg)


def _serve() -> None:
    """The background process: (calib, cfg), then keyframes, on stdin; updates on stdout."""
    logging.basicConfig(level=logging.WARNING)
    # a terminal's Ctrl-C reaches the whole process group: the parent stops this process by
    # closing its stdin, so SIGINT here would only print a traceback
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # the updates get a private copy of stdout; anything a library prints goes to stderr
    inp, out = sys.stdin.buffer, os.fdopen(os.dup(1), 'wb')
    os.dup2(2, 1)
    calib, cfg = pickle.load(inp)
    mapper = Mapper(calib, cfg)
    while True:
        try:
            kf = pickle.load(inp)
        except EOFError:
            return
        pickle.dump(mapper.add_keyframe(kf), out, protocol=pickle.HIGHEST_PROTOCOL)
        out.flush()


if __name__ == '__main__':
    # run the importable module's copy, so the pickled updates name hndesc_ros.vo.mapper
    from hndesc_ros.vo import mapper as _module
    _module._serve()
