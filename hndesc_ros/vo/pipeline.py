"""Whole VO pipelines: images in, poses out (no ROS).

:class:`StereoVO`: Extractor -> StereoTracker -> StereoOdometry (GTSAM).
:class:`MonoVO`: frame-to-frame essential matrix (5-point RANSAC); translation scale from
ground truth (``gt_scale``) as in the published monocular protocol, else unit steps.
"""
from __future__ import annotations

import logging
import time
from typing import Callable, Dict, Optional

import numpy as np

from hndesc_ros.config import Config
from hndesc_ros.features.extractor import Extractor
from hndesc_ros.features.matching import match_numpy
from hndesc_ros.types import Features, StereoCalib, StereoFrame
from hndesc_ros.vo.geometry import essential_motion, inv
from hndesc_ros.vo.odometry import FrameResult, StereoOdometry
from hndesc_ros.vo.tracker import StereoTracker

LOG = logging.getLogger(__name__)


class StereoFrontend:
    """Images -> Observations: feature extraction on both images + StereoTracker.

    Used by :class:`StereoVO` and by the ROS front-end node (one call per stereo pair).
    """

    def __init__(self, cfg: Optional[Config] = None, extractor: Optional[Extractor] = None):
        self.cfg = cfg or Config()
        self.extractor = extractor or Extractor(self.cfg.features)
        self.tracker = StereoTracker(self.cfg.matching)

    def process(self, left: np.ndarray, right: Optional[np.ndarray], stamp: float = 0.0,
                index: int = 0):
        """(H, W) left and right (or None: mono) images -> Observations with timings (ms)."""
        t0 = time.perf_counter()
        fl = self.extractor.extract(left)
        t1 = time.perf_counter()
        fr = self.extractor.extract(right) if right is not None else None
        t2 = time.perf_counter()
        obs = self.tracker.track(fl, fr, stamp, index)
        obs.timings['extract_left'] = (t1 - t0) * 1e3
        if fr is not None:
            obs.timings['extract_right'] = (t2 - t1) * 1e3
        return obs


class StereoVO:
    """Stereo visual odometry on rectified pairs.

    Args:
        calib: rectified stereo calibration.
        cfg: the project Config.
        extractor: optional shared Extractor (built from cfg.features otherwise).
    """

    def __init__(self, calib: StereoCalib, cfg: Optional[Config] = None,
                 extractor: Optional[Extractor] = None):
        self.cfg = cfg or Config()
        self.calib = calib
        self.frontend = StereoFrontend(self.cfg, extractor)
        self.odometry = StereoOdometry(calib, self.cfg.vo)

    def process(self, frame: StereoFrame) -> FrameResult:
        """One stereo pair -> FrameResult (pose T_world_cam, timings in ms)."""
        obs = self.frontend.process(frame.left, frame.right, frame.stamp, frame.index)
        return self.odometry.process(obs)


class MonoVO:
    """Monocular VO: essential matrix between consecutive frames.

    Args:
        calib: pinhole calibration (baseline ignored).
        cfg: the project Config.
        scale_fn: ``scale_fn(k)`` -> metres travelled between frame k-1 and k (ground-truth
            scale); None for unit-length steps (evaluate with Sim(3) alignment).
    """

    def __init__(self, calib: StereoCalib, cfg: Optional[Config] = None,
                 scale_fn: Optional[Callable[[int], float]] = None,
                 extractor: Optional[Extractor] = None):
        self.cfg = cfg or Config()
        self.calib = calib
        self.extractor = extractor or Extractor(self.cfg.features)
        self.scale_fn = scale_fn
        self.prev: Optional[Features] = None
        self.T = np.eye(4)
        self.k = 0
        self.lost = 0

    def process(self, frame: StereoFrame) -> FrameResult:
        t0 = time.perf_counter()
        feats = self.extractor.extract(frame.left)
        t1 = time.perf_counter()
        tracked, n_inl = True, 0
        if self.prev is not None:
            m = match_numpy(self.prev.descriptors, feats.descriptors, self.cfg.matching.ratio,
                            self.cfg.matching.max_distance)
            p0 = self.prev.keypoints[m.indices[:, 0]].astype(np.float64)
            p1 = feats.keypoints[m.indices[:, 1]].astype(np.float64)
            T_cp, inl = essential_motion(p0, p1, self.calib)
            n_inl = len(inl)
            if T_cp is None or n_inl < self.cfg.vo.min_inliers:
                tracked = False
                self.lost += 1
                LOG.warning('frame %d: mono tracking lost (%d inliers)', frame.index, n_inl)
            else:
                scale = self.scale_fn(self.k) if self.scale_fn else 1.0
                T_pc = inv(T_cp)
                T_pc[:3, 3] *= scale
                self.T = self.T @ T_pc
        t2 = time.perf_counter()
        self.prev = feats
        res = FrameResult(frame.index, frame.stamp, self.T.copy(), tracked, True, n_inl,
                          len(feats), {'extract_left': (t1 - t0) * 1e3,
                                       'essential': (t2 - t1) * 1e3})
        self.k += 1
        return res


def summarise_timings(results) -> Dict[str, float]:
    """Median ms per stage over frames, plus front-end and back-end frames per second."""
    keys = sorted({k for r in results for k in r.timings})
    med = {k: float(np.median([r.timings.get(k, 0.0) for r in results])) for k in keys}
    front = sum(v for k, v in med.items() if k.startswith(('extract', 'stereo', 'temporal')))
    back = sum(v for k, v in med.items() if k in ('pnp', 'smoother', 'essential'))
    med['fps_frontend'] = 1000.0 / front if front > 0 else float('inf')
    med['fps_backend'] = 1000.0 / back if back > 0 else float('inf')
    return med
