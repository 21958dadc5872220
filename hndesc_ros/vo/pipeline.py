"""Whole VO pipelines: images in, poses out (no ROS).

:class:`StereoFrontend`: left image -> Features; stereo correspondences (block matching of the
pair by default; or SIFT / descriptors of both images, or KLT into the right image); tracking
against the local map -> Observations. The ROS front-end node runs exactly this.
:class:`StereoVO`: StereoFrontend -> StereoOdometry (the back end, as in the ROS back-end node),
with the mapper's refined landmarks handed back to the front end's local map.
Monocular (``vo.mono``): the front end tracks frame to frame and
:class:`~hndesc_ros.vo.odometry.MonoOdometry` estimates the motion.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, Iterator, Optional, Tuple

import numpy as np

from hndesc_ros.config import Config, frontend_features
from hndesc_ros.errors import BackendUnavailable, ImageError
from hndesc_ros.features.extractor import Extractor
from hndesc_ros.features.stereo import (BlockDisparities, block_disparities, block_lookup,
                                        stereo_descriptors, stereo_klt)
from hndesc_ros.features.image import check_image, normalise_light, suppress_noise, to_gray
from hndesc_ros.types import Features, FrameResult, Observations, StereoCalib, StereoFrame
from hndesc_ros.vo.mapper import MapUpdate
from hndesc_ros.vo.odometry import MonoOdometry, StereoOdometry
from hndesc_ros.vo.tracker import MapTracker, TemporalTracker

LOG = logging.getLogger(__name__)


@dataclass
class PairFeatures:
    """What :meth:`StereoFrontend.extract` produces for one pair (before any tracking).

    Attributes:
        left: Features of the left image (the configured descriptor).
        left_sift: the (Root)SIFT part at the same keypoints (None without a SIFT branch).
        right: Features of the right image for SIFT or descriptor stereo (None: mono, block,
            KLT or static).
        u_right: (N,) right u already known (block, KLT, the static front end), else None.
        timings: ms per stage so far.
        image: the left (H, W) uint8 gray image the features come from (for KLT:
            ``vo.klt_frames``, ``vo.klt_reobserve``), or None.
        pair: a frame left to KLT (``vo.klt_frames``; ``left`` is None): its (left, right)
            images, extracted if KLT cannot track it.
        disparities: block stereo's disparity maps of the pair (``matching.stereo_method:
            block``), for pixels other than the keypoints (landmarks re-observed by KLT).
        stretched: ``features.light`` changed the pair's levels (``stretch``: a dim or flat
            exposure; ``clahe``: every pair).
        noisy: the pair was blurred against its noise (``features.max_noise``): KLT
            re-observes in it without chains (:meth:`MapTracker.track`, ``noisy``).
    """

    left: Optional[Features]
    left_sift: Optional[Features]
    right: Optional[Features]
    u_right: Optional[np.ndarray]
    timings: Dict[str, float] = field(default_factory=dict)
    image: Optional[np.ndarray] = None
    pair: Optional[Tuple[np.ndarray, Optional[np.ndarray]]] = None
    disparities: Optional[BlockDisparities] = None
    stretched: bool = False
    noisy: bool = False


def uses_static_frontend(cfg: Config) -> bool:
    """The static-shape GPU front end serves stereo when it computes what the config asks
    for: a CUDA ``features.device``, learned keypoints of a network extractor and the torch
    backend (``auto`` on CUDA). Anything else (SIFT keypoints, the fused residual descriptor
    at SIFT keypoints, ONNX Runtime or TensorRT) runs the CPU path's Extractor."""
    from hndesc_ros.inference import resolve_backend
    f = cfg.features
    return (f.device.startswith('cuda') and not cfg.vo.mono and f.keypoints == 'learned'
            and resolve_backend(f.backend, f.device) == 'torch')


def feature_source(cfg: Config, static: Optional[bool] = None):
    """What extracts a stereo pair's features: an :class:`Extractor` (CPU path), or with
    ``static`` (default: :func:`uses_static_frontend`) the GpuStereoFrontend. Weights load
    (and fail, with one line) here."""
    if uses_static_frontend(cfg) if static is None else static:
        try:
            from hndesc_ros.features.gpu import GpuStereoFrontend  # torch: imported only here
        except ImportError as exc:
            raise BackendUnavailable(f'the GPU front end needs torch ({exc}): pip install -r '
                                     'requirements-train.txt') from None
        return GpuStereoFrontend(cfg)
    return Extractor(frontend_features(cfg))


class StereoFrontend:
    """Images -> Observations with persistent landmark ids (one call per stereo pair).

    Features and stereo correspondences come from the CPU path (Extractor: SIFT and/or the
    network through the configured backend) or from the static-shape
    :class:`~hndesc_ros.features.gpu.GpuStereoFrontend` (learned keypoints, CNN descriptors and
    stereo matching in one pass, a CUDA graph on the GPU; it also runs eagerly on the CPU).
    Tracking is the same code either way, so the Observations have one contract.

    Args:
        calib: rectified calibration (the local map projects with it).
        cfg: the project Config; ``vo.mono`` selects the monocular front end.
        extractor: optional shared feature source (:func:`feature_source`).
        static: without ``extractor``: the static front end on or off (default: on CUDA).
    """

    def __init__(self, calib: StereoCalib, cfg: Optional[Config] = None,
                 extractor=None, static: Optional[bool] = None):
        self.cfg = cfg or Config()
        self.calib = calib
        self._owns_extractor = extractor is None
        self.extractor = extractor or feature_source(self.cfg, static)
        self.static = self.extractor if getattr(self.extractor, 'static_shapes', False) else None
        self.mono = self.cfg.vo.mono
        self.tracker = (TemporalTracker(self.cfg.matching) if self.mono
                        else MapTracker(calib, self.cfg.matching, self.cfg.vo))
        self.stereo_method = self.cfg.matching.stereo_method
        if self.stereo_method == 'sift' and self.cfg.features.keypoints == 'learned':
            # the right image's SIFT detections are not the left's learned keypoints
            LOG.info('learned keypoints: stereo by descriptors of both images')
            self.stereo_method = 'descriptor'
        # the right image is extracted while the left one is
        self._pool = (ThreadPoolExecutor(1, thread_name_prefix='hndesc-right')
                      if self.cfg.features.parallel and not self.mono and self.static is None
                      and self.stereo_method != 'klt' else None)
        # vo.klt_frames: frames tracked by KLT alone between two extracted ones (stereo, CPU path)
        self.klt_frames = (self.cfg.vo.klt_frames if not self.mono and self.static is None
                           else 0)
        self._keep_image = not self.mono and (self.klt_frames > 0 or self.cfg.vo.klt_reobserve)
        # the extraction schedule: pairs since the last scheduled extraction (None: none
        # yet), its stamp, and the stamp of the last pair
        self._since_extracted: Optional[int] = None
        self._extracted_at: Optional[float] = None
        self._last_stamp: Optional[float] = None
        # pairs tracked so far whose light the front end changed: levels stretched
        # (features.light: stretch when dim; clahe: every pair), blurred against their
        # noise (features.max_noise). A camera in low light shows here first: such pairs
        # are always extracted, so they cost more
        self.stretched = 0
        self.blurred = 0

    def extract(self, left: np.ndarray, right: Optional[np.ndarray],
                stamp: Optional[float] = None) -> PairFeatures:
        """The half of a frame that does not touch the tracker: features of the left image and
        what stereo needs of the right one (left || right in two threads). Safe to run for the
        next frame while :meth:`track` handles this one (:meth:`StereoVO.run` does).

        Pairs left to KLT (:meth:`_left_to_klt`) keep their prepared images for :meth:`track`
        (KLT, or extraction if KLT fails). A pair that ``features.max_noise`` had to blur is
        always extracted, and KLT re-observes in it without chains."""
        t0 = time.perf_counter()
        left, right, stretched, noisy = self._prepare(left, right)
        if self._left_to_klt(stamp) and not noisy:  # KLT assumes clean images
            return PairFeatures(None, None, None, None,
                                {'prepare': (time.perf_counter() - t0) * 1e3}, to_gray(left),
                                (left, right), stretched=stretched)
        pf = self._extract(left, right, t0)
        pf.stretched, pf.noisy = stretched, noisy
        return pf

    def _left_to_klt(self, stamp: Optional[float]) -> bool:
        """Whether the pair with this stamp (s; None: unknown) is left to KLT.

        With ``vo.klt_frames`` = n, a pair is extracted once (n + 1) / ``vo.klt_rate_hz`` s
        have passed since the last extracted one (within half a frame interval): every
        (n + 1)-th pair of a camera at that rate, proportionally fewer of a faster one, every
        pair of a slow one, and sooner after dropped frames. Without increasing stamps (or with
        ``vo.klt_rate_hz`` 0) every (n + 1)-th pair is extracted."""
        n, rate = self.klt_frames, self.cfg.vo.klt_rate_hz
        previous, self._last_stamp = self._last_stamp, stamp
        if n == 0:
            return False
        timed = (rate > 0 and None not in (stamp, previous, self._extracted_at)
                 and stamp > previous)
        if self._since_extracted is None:  # the first pair
            due = True
        elif timed:
            due = stamp - self._extracted_at >= (n + 1) / rate - (stamp - previous) / 2
        else:
            due = self._since_extracted >= n
        if due:
            self._since_extracted, self._extracted_at = 0, stamp
        else:
            self._since_extracted += 1
        return not due

    def _prepare(self, left: np.ndarray, right: Optional[np.ndarray]
                 ) -> Tuple[np.ndarray, Optional[np.ndarray], bool, bool]:
        """The pair after ``features.light`` and ``features.max_noise`` (both images checked,
        and of one size: block matching takes the right one as it is), whether its levels
        were changed (``features.light``) and whether it was too noisy (blurred by
        ``features.max_noise``)."""
        f = self.cfg.features
        left = check_image(left, 'left image')
        right = None if right is None or self.mono else check_image(right, 'right image')
        if right is not None and right.shape[:2] != left.shape[:2]:
            raise ImageError(f'left and right image sizes differ ({left.shape[1]}x'
                             f'{left.shape[0]} and {right.shape[1]}x{right.shape[0]}): a '
                             'rectified pair has one size')
        if f.light == 'none' and f.max_noise <= 0:
            return left, right, False, False
        lit = normalise_light([left, right], f.light)  # the same objects when well exposed
        quiet = suppress_noise(lit, f.max_noise)       # ... when not noisy
        return quiet[0], quiet[1], lit[0] is not left, quiet[0] is not lit[0]

    def _extract(self, left: np.ndarray, right: Optional[np.ndarray],
                 t0: float) -> PairFeatures:
        """Features of prepared (light-normalised) images; see :meth:`extract`."""
        if self.static is not None:
            gray = to_gray(left)
            fl, u_right = self.static.stereo_features(gray, to_gray(right))
            return PairFeatures(fl, None, None, u_right,
                                {'static_frontend': (time.perf_counter() - t0) * 1e3},
                                gray if self._keep_image else None)
        method = self.stereo_method
        stereo = right is not None and not self.mono
        m = self.cfg.matching
        gray = to_gray(left) if stereo or self._keep_image else None
        if method == 'block':  # the right image's part: dense disparities, no features
            def right_fn(image):
                return block_disparities(gray, to_gray(image), m)
        else:
            right_fn = (self.extractor.sift_features if method == 'sift'
                        else self.extractor.extract)
        right_job = None
        if self._pool is not None and stereo:
            right_job = self._pool.submit(right_fn, right)
        fl, sl = self.extractor.extract_with_sift(left)
        t1 = time.perf_counter()
        pf = PairFeatures(fl, sl, None, None, {'extract_left': (t1 - t0) * 1e3},
                          gray if self._keep_image else None)
        if stereo and method == 'block':
            pf.disparities = right_job.result() if right_job else right_fn(right)
            pf.u_right = block_lookup(pf.disparities, fl.keypoints, m)
            pf.timings['stereo_matching'] = (time.perf_counter() - t1) * 1e3
        elif stereo and method == 'klt':  # the left keypoints tracked into the right image
            pf.u_right = stereo_klt(gray, to_gray(right), fl.keypoints, m)
            pf.timings['stereo_matching'] = (time.perf_counter() - t1) * 1e3
        elif stereo:
            pf.right = right_job.result() if right_job else right_fn(right)
            pf.timings['extract_right'] = (time.perf_counter() - t1) * 1e3
        return pf

    def stereo(self, pf: PairFeatures) -> np.ndarray:
        """(N,) right-image u of each left keypoint (NaN: none; all NaN in mono).

        ``matching.stereo_method``: ``block`` reads each left keypoint's disparity from block
        matching of the pair (no right features); ``sift`` matches the (Root)SIFT part of the
        left keypoints with SIFT of the right image (the network runs on the left image only);
        ``descriptor`` extracts both images fully; ``klt`` tracks the left keypoints into the
        right image. ``block`` and ``klt`` answer during extraction.
        """
        if pf.u_right is not None:
            return pf.u_right
        if pf.right is None:
            return np.full(len(pf.left), np.nan, np.float32)
        t0 = time.perf_counter()
        left = pf.left_sift if self.stereo_method == 'sift' else pf.left
        u_right = stereo_descriptors(left, pf.right, self.cfg.matching)
        pf.timings['stereo_matching'] = (time.perf_counter() - t0) * 1e3
        return u_right

    def stereo_features(self, left: np.ndarray, right: Optional[np.ndarray]
                        ) -> Tuple[Features, np.ndarray, Dict[str, float]]:
        """The pair's features (always extracted: no KLT turn) then :meth:`stereo`: left
        Features, (N,) right u, ms per stage."""
        t0 = time.perf_counter()
        pf = self._extract(*self._prepare(left, right)[:2], t0)
        u_right = self.stereo(pf)
        return pf.left, u_right, pf.timings

    def track(self, pf: PairFeatures, stamp: float = 0.0, index: int = 0) -> Observations:
        """The stateful half: stereo correspondences and tracking -> Observations.

        A pair left to KLT (``vo.klt_frames``) is tracked by :meth:`MapTracker.track_klt`;
        when that cannot track it, the pair is extracted here and tracked as any other."""
        self.stretched += pf.stretched
        self.blurred += pf.noisy
        if pf.left is None:
            obs = self.tracker.track_klt(pf.image, stamp, index)
            if obs is not None:
                obs.timings.update(pf.timings)
                return obs
            pf = self._extract(*pf.pair, time.perf_counter())
        u_right = self.stereo(pf)
        if self.mono:
            obs = self.tracker.track(pf.left, stamp, index)
        else:
            maps, m = pf.disparities, self.cfg.matching
            obs = self.tracker.track(pf.left, u_right, stamp, index, pf.image,
                                     None if maps is None else
                                     (lambda xy: block_lookup(maps, xy, m)),
                                     noisy=pf.noisy)  # KLT: one step from a detection
        obs.timings.update(pf.timings)
        return obs

    def process(self, left: np.ndarray, right: Optional[np.ndarray], stamp: float = 0.0,
                index: int = 0) -> Observations:
        """(H, W) left and right (None in mono) images -> Observations with timings (ms)."""
        return self.track(self.extract(left, right, stamp), stamp, index)

    def close(self) -> None:
        """Stop the worker threads."""
        if self._pool is not None:
            self._pool.shutdown()
        if self._owns_extractor:
            self.extractor.close()

    def tracker_update(self, ids: np.ndarray, points: np.ndarray,
                       disparity_offset: Optional[float] = None) -> None:
        """Refined landmarks from the back end's mapper.

        Args:
            ids: (K,) int64 landmark ids.
            points: (K, 3) their world positions.
            disparity_offset: the back end's disparity offset (px); None: unchanged.
        """
        if not self.mono:
            self.tracker.apply_map_update(ids, points)
            self.set_disparity_offset(disparity_offset)

    def set_disparity_offset(self, px: Optional[float]) -> None:
        """Use the back end's disparity offset where the local map starts landmarks.

        Args:
            px: removed from every right u (px); None: unchanged. Ignored in mono.
        """
        if px is not None and not self.mono:
            self.tracker.set_disparity_offset(float(px))


class StereoVO:
    """Visual odometry on rectified pairs (or monocular with ``vo.mono``).

    Args:
        calib: rectified stereo calibration.
        cfg: the project Config.
        extractor: optional shared Extractor (built from cfg.features otherwise).
        scale_fn: monocular only: metres travelled per frame (ground-truth scale), or None.
    """

    def __init__(self, calib: StereoCalib, cfg: Optional[Config] = None,
                 extractor: Optional[Extractor] = None,
                 scale_fn: Optional[Callable[[int], float]] = None):
        self.cfg = cfg or Config()
        self.calib = calib
        self.frontend = StereoFrontend(calib, self.cfg, extractor)
        self.last_observations: Optional[Observations] = None
        self._unmapped: Optional[FrameResult] = None  # the last frame, its mapping deferred
        self.odometry = (MonoOdometry(calib, self.cfg.vo, scale_fn) if self.cfg.vo.mono
                         else StereoOdometry(calib, self.cfg.vo))

    def process(self, frame: StereoFrame) -> FrameResult:
        """One stereo pair -> FrameResult (pose T_world_cam, timings in ms)."""
        return self._finish(frame, self.frontend.extract(frame.left, frame.right, frame.stamp))

    def run(self, frames: Iterable[StereoFrame]) -> Iterator[FrameResult]:
        """FrameResults of a stream of pairs, in order.

        With ``vo.pipelined`` the next ``vo.prefetch`` pairs are read and extracted, in order,
        in a worker thread while this one is tracked and mapped: extraction does not depend on
        the tracker's state (the static GPU front end keeps its own, in frame order), so the
        poses are those of :meth:`process` frame by frame, and the second core is no longer
        idle while the tracker, PnP and GTSAM run in this thread. Several pairs ahead, the
        worker reaches the next extracted pair while the pairs left to KLT are tracked. Consume
        the generator to its end (or close it) before :meth:`close`; closing it early waits
        for the pairs in extraction.
        """
        it = iter(frames)
        if not self.cfg.vo.pipelined:
            for frame in it:
                yield self.process(frame)
                self._map_previous()  # while the caller waits for the next frame
            return

        def load():
            frame = next(it, None)
            return None if frame is None else (
                frame, self.frontend.extract(frame.left, frame.right, frame.stamp))

        with ThreadPoolExecutor(1, thread_name_prefix='hndesc-extract') as pool:
            jobs = deque(pool.submit(load) for _ in range(self.cfg.vo.prefetch))
            while (item := jobs.popleft().result()) is not None:
                jobs.append(pool.submit(load))
                yield self._finish(*item)
                self._map_previous()  # while the next pair is read and extracted

    def _finish(self, frame: StereoFrame, pf: PairFeatures) -> FrameResult:
        """Track one pair and estimate its pose. Its mapping step runs when the next pair
        comes (or in :meth:`finish`), after the caller has the pose, as the back-end node
        publishes before it maps; the poses are those of immediate mapping, because the step
        and the refined landmarks it shares reach the front end before the next pair is
        tracked (``timings['mapping']`` is filled in then)."""
        self._map_previous()
        obs = self.frontend.track(pf, frame.stamp, frame.index)
        self.last_observations = obs
        self._unmapped = self.odometry.process(obs, defer_mapping=True)
        return self._unmapped

    def _map_previous(self) -> None:
        """The deferred mapping step of the last frame, and what it shares with the front end
        (refined landmarks, the disparity offset: empty unless vo.share_map)."""
        res, self._unmapped = self._unmapped, None
        if res is None:
            return
        # added: mono maps inside process() and reports that time itself
        res.timings['mapping'] = res.timings.get('mapping', 0.0) + self.odometry.map_pending()
        for u in self.odometry.map_updates():
            self.frontend.tracker_update(u.track_ids, u.points, u.disparity_offset)

    def finish(self) -> Dict[int, np.ndarray]:
        """The last frame's mapping step, then wait for the mapper; returns the optimised
        keyframe poses by frame index."""
        self._map_previous()
        self.odometry.finish()
        return dict(getattr(self.odometry, 'keyframe_poses', {}))

    def close(self) -> None:
        """Stop the mapper process and the front end's threads."""
        self.odometry.close()
        self.frontend.close()


def summarise_timings(results) -> Dict[str, float]:
    """Median ms per stage over frames, plus front-end and back-end frames per second."""
    keys = sorted({k for r in results for k in r.timings})
    med = {k: float(np.median([r.timings.get(k, 0.0) for r in results])) for k in keys}
    front_keys = ('extract', 'stereo', 'map_', 'temporal', 'static')
    front = sum(v for k, v in med.items() if k.startswith(front_keys))
    back = sum(v for k, v in med.items() if k in ('pnp', 'mapping', 'essential'))
    med['fps_frontend'] = 1000.0 / front if front > 0 else float('inf')
    med['fps_backend'] = 1000.0 / back if back > 0 else float('inf')
    return med


__all__ = ['MapUpdate', 'PairFeatures', 'StereoFrontend', 'StereoVO', 'summarise_timings']
