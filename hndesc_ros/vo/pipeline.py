"""Whole VO pipelines: images in, poses out (no ROS).

:class:`StereoFrontend`: left image -> Features; stereo correspondences (KLT into the right
image, or descriptors of both images); tracking against the local map -> Observations. The ROS
front-end node runs exactly this.
:class:`StereoVO`: StereoFrontend -> StereoOdometry (the back end, as in the ROS back-end node),
with the mapper's refined landmarks handed back to the front end's local map.
Monocular (``vo.mono``): the front end tracks frame to frame and
:class:`~hndesc_ros.vo.odometry.MonoOdometry` estimates the motion.
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, Optional, Tuple

import numpy as np

from hndesc_ros.config import Config
from hndesc_ros.errors import BackendUnavailable
from hndesc_ros.features.extractor import Extractor
from hndesc_ros.features.stereo import stereo_descriptors, stereo_klt
from hndesc_ros.features.image import to_gray
from hndesc_ros.types import Features, FrameResult, Observations, StereoCalib, StereoFrame
from hndesc_ros.vo.mapper import MapUpdate
from hndesc_ros.vo.odometry import MonoOdometry, StereoOdometry
from hndesc_ros.vo.tracker import MapTracker, TemporalTracker

LOG = logging.getLogger(__name__)


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
    return Extractor(cfg.features)


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

    def stereo_features(self, left: np.ndarray, right: Optional[np.ndarray]
                        ) -> Tuple[Features, np.ndarray, Dict[str, float]]:
        """Left Features and the right-image u of each keypoint (NaN: none; all NaN in mono).

        ``matching.stereo_method``: ``sift`` matches the (Root)SIFT part of the left keypoints
        with SIFT of the right image (the network runs on the left image only); ``descriptor``
        extracts both images fully; ``klt`` tracks the left keypoints into the right image.
        """
        t0 = time.perf_counter()
        if self.static is not None:
            fl, u_right = self.static.stereo_features(to_gray(left), to_gray(right))
            return fl, u_right, {'static_frontend': (time.perf_counter() - t0) * 1e3}
        method = self.stereo_method
        right_job = None
        if self._pool is not None and right is not None and method != 'klt':
            fn = self.extractor.sift_features if method == 'sift' else self.extractor.extract
            right_job = self._pool.submit(fn, right)
        fl, sl = self.extractor.extract_with_sift(left)
        t1 = time.perf_counter()
        timings = {'extract_left': (t1 - t0) * 1e3}
        u_right = np.full(len(fl), np.nan, np.float32)
        if right is not None and not self.mono:
            if method == 'klt':
                u_right = stereo_klt(to_gray(left), to_gray(right), fl.keypoints,
                                     self.cfg.matching)
            else:
                fn = self.extractor.sift_features if method == 'sift' else self.extractor.extract
                fr = right_job.result() if right_job else fn(right)
                timings['extract_right'] = (time.perf_counter() - t1) * 1e3
                u_right = stereo_descriptors(sl if method == 'sift' else fl, fr,
                                             self.cfg.matching)
            timings['stereo_matching'] = (time.perf_counter() - t1) * 1e3 - \
                timings.get('extract_right', 0.0)
        return fl, u_right, timings

    def process(self, left: np.ndarray, right: Optional[np.ndarray], stamp: float = 0.0,
                index: int = 0) -> Observations:
        """(H, W) left and right (None in mono) images -> Observations with timings (ms)."""
        fl, u_right, timings = self.stereo_features(left, right)
        if self.mono:
            obs = self.tracker.track(fl, stamp, index)
        else:
            obs = self.tracker.track(fl, u_right, stamp, index)
        obs.timings.update(timings)
        return obs

    def close(self) -> None:
        """Stop the worker threads."""
        if self._pool is not None:
            self._pool.shutdown()
        if self._owns_extractor:
            self.extractor.close()

    def tracker_update(self, ids: np.ndarray, points: np.ndarray) -> None:
        """Refined landmark positions ((K,) ids, (K, 3) world) from the back end's mapper."""
        if not self.mono:
            self.tracker.apply_map_update(ids, points)


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
        self.odometry = (MonoOdometry(calib, self.cfg.vo, scale_fn) if self.cfg.vo.mono
                         else StereoOdometry(calib, self.cfg.vo))

    def process(self, frame: StereoFrame) -> FrameResult:
        """One stereo pair -> FrameResult (pose T_world_cam, timings in ms)."""
        obs = self.frontend.process(frame.left, frame.right, frame.stamp, frame.index)
        self.last_observations = obs
        res = self.odometry.process(obs)
        for u in self.odometry.map_updates():
            if self.cfg.vo.share_map:
                self.frontend.tracker_update(u.track_ids, u.points)
        return res

    def finish(self) -> Dict[int, np.ndarray]:
        """Wait for the mapper; returns the optimised keyframe poses by frame index."""
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


__all__ = ['MapUpdate', 'StereoFrontend', 'StereoVO', 'summarise_timings']
