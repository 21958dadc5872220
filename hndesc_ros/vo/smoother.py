"""GTSAM incremental fixed-lag smoothers (iSAM2): stereo keyframes, and every monocular frame.

Variables: poses ``x<k>`` (T_world_camera) and landmarks ``l<j>`` (world points).
``IncrementalFixedLagSmoother`` (iSAM2 underneath) keeps the last ``window`` poses (GTSAM
keeps one more, which takes no new factors here) and marginalises everything older, so the
cost per pose is bounded whatever the sequence length.

- :class:`StereoSmoother`: a prior on the first pose, ``GenericStereoFactor3D`` with
  Huber-robust pixel noise for every stereo observation and
  ``GenericProjectionFactorCal3_S2`` for an observation without stereo (a KLT frame), each
  with its keypoint's noise multiple, optional pose priors (re-initialisation after tracking
  loss).
- :class:`MonoSmoother`: ``GenericProjectionFactorCal3_S2`` for every observation of a
  landmark, the two-view motion from the last frame with observations as a loose
  ``BetweenFactorPose3``, and the step length as a ``RangeFactorPose3`` where it is known
  (ground-truth scale) or for the first step only (the monocular gauge: the map carries the
  scale from there on).

An update that iSAM2 fails (Cholesky's "indeterminate linear system") is eliminated anew by
QR (``_FixedLag._rebuild``); only if that fails too does the caller restart the window.
"""
from __future__ import annotations

import logging
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np

from hndesc_ros.types import StereoCalib

LOG = logging.getLogger(__name__)
_X, _L = ord('x') << 56, ord('l') << 56


def _gtsam():
    import gtsam
    return gtsam


def _isam2_params(qr: bool = False):
    """The smoothers' iSAM2 settings; ``qr``: factorise by QR instead of Cholesky."""
    params = _gtsam().ISAM2Params()
    params.setRelinearizeThreshold(0.01)
    params.relinearizeSkip = 1
    if qr:
        params.setFactorization('QR')
    return params


class _FixedLag:
    """What both smoothers share: the iSAM2 fixed-lag smoother, GTSAM keys, and which landmarks
    still have an observation inside the window (only those may take new factors).

    A landmark is stamped with the newest pose observing it, so it stays while it is seen
    (``stamp_at_first`` False), or with the first one, so it leaves the window with that pose
    (True). Marginalising a pose joins everything still connected to it into one dense
    factor: with the newest stamp, those are the landmarks it shares with the window. A camera
    that keeps its landmarks for many keyframes (slow motion, a room) then makes factors over
    thousands of landmark coordinates, and one iSAM2 update took up to 3.2 s (a synthetic
    752 x 480 room, 900 observations a keyframe). With the first stamp a pose leaves with the
    landmarks it started, and the dense factor spans only the window's poses.

    Args:
        window: poses kept in the window (the smoother lag).
        iterations: extra iSAM2 update steps per pose (relinearisation).
    """

    stamp_at_first = False

    def __init__(self, window: int, iterations: int = 0):
        gtsam = _gtsam()
        self.window = window
        # A near-uninformative prior on every new landmark keeps the linear system determinate
        # when a landmark's factors lose their Jacobian (cheirality: a far point pushed behind
        # the camera). It must be very loose: at 10 m it biased the poses measurably on
        # synthetic data with 0.5 px noise; at 1000 m it does not (test_smoother.py).
        self.landmark_prior = gtsam.noiseModel.Isotropic.Sigma(3, 1000.0)
        self.prior_noise = gtsam.noiseModel.Diagonal.Sigmas(  # the first pose: fixed
            np.array([1e-4, 1e-4, 1e-4, 1e-4, 1e-4, 1e-4]))
        self.smoother = gtsam.IncrementalFixedLagSmoother(float(window), _isam2_params())
        self.extra_iterations = iterations
        self.rebuilds = 0  # failed updates recovered by eliminating the window anew (QR)
        self.landmark_time: Dict[int, float] = {}
        self.latest: Optional[int] = None
        self.factors = 0

    # GTSAM keys, as gtsam.symbol('x', k) and gtsam.symbol('l', j) compute them (the character
    # in the top 8 of 64 bits), without a call into the bindings per factor
    @staticmethod
    def X(k: int) -> int:
        return _X | k

    @staticmethod
    def L(j: int) -> int:
        return _L | j

    def pose_alive(self, k: int) -> bool:
        """True while pose k is still inside the window (can take new factors)."""
        return self.latest is not None and k > self.latest - self.window

    def landmark_alive(self, j: int) -> bool:
        """True while landmark j is inside the window (can take new observations)."""
        return bool(self.alive_landmarks((j,)))

    def alive_landmarks(self, js: Iterable[int]) -> List[int]:
        """The landmarks of ``js`` still inside the window, in order."""
        if self.latest is None:
            return []
        oldest, times = self.latest - self.window, self.landmark_time
        return [j for j in js if times.get(j, oldest) > oldest]

    def _begin(self, k: int, T_world_cam: np.ndarray):
        """An empty graph, values holding pose k's initial guess, empty stamps, and the
        gtsam.Pose3 of the guess."""
        gtsam = _gtsam()
        pose = gtsam.Pose3(T_world_cam)
        values = gtsam.Values()
        values.insert(self.X(k), pose)
        return (gtsam.NonlinearFactorGraph(), values, gtsam.FixedLagSmootherKeyTimestampMap(),
                pose)

    def _new_landmarks(self, graph, values, new_landmarks: Dict[int, np.ndarray]) -> None:
        gtsam = _gtsam()
        for j, p in new_landmarks.items():
            point = gtsam.Point3(*np.asarray(p, float))
            values.insert(self.L(j), point)
            graph.add(gtsam.PriorFactorPoint3(self.L(j), point, self.landmark_prior))

    def _update(self, k: int, graph, values, stamps, touched: Dict[int, int]) -> None:
        """Stamp pose k and the landmarks in ``touched`` (id -> the first or the newest pose
        of this update observing it, as ``stamp_at_first`` says), run iSAM2, and forget the
        landmarks that left the window."""
        stamps.insert((self.X(k), float(k)))
        for j, kf in touched.items():
            if self.stamp_at_first:
                t = self.landmark_time.get(j, kf)
            else:
                t = max(self.landmark_time.get(j, -1), kf)
            self.landmark_time[j] = t
            stamps.insert((self.L(j), float(t)))
        self.factors += graph.size()
        try:
            self._solve(graph, values, stamps)
        except RuntimeError as exc:
            self._rebuild(exc)
        self.latest = k
        dead = [j for j, t in self.landmark_time.items() if t <= k - self.window]
        for j in dead:
            del self.landmark_time[j]

    def _solve(self, *update) -> None:
        """One iSAM2 update (graph, values, stamps) and ``extra_iterations`` more steps."""
        self.smoother.update(*update)
        for _ in range(self.extra_iterations):  # a few more iSAM2 steps relinearise
            self.smoother.update()

    def _rebuild(self, exc: RuntimeError) -> None:
        """Eliminate the whole window anew, by QR from then on, after iSAM2 failed an update.

        A loosely held gauge (the stereo mapper's loose first-pose prior, and marginals that
        hold some direction of the window's poses not at all) conditions the system near the
        limit of double precision. Cholesky, iSAM2's default and the faster, can then meet a
        non-positive pivot (GTSAM's "indeterminate linear system"), even from scratch; QR
        works on the square root of the system. A new smoother takes the old one's factors
        (the failed update's and the marginals included), linearisation point and stamps.
        Measured in docs/history.md (eighteenth session).

        Args:
            exc: the failed update's error.
        Raises:
            RuntimeError: ``exc``, if QR fails too (the caller then restarts the window).
        """
        gtsam = _gtsam()
        old, graph = self.smoother, gtsam.NonlinearFactorGraph()
        factors = old.getFactors()
        for i in range(factors.size()):
            factor = factors.at(i)
            if factor is not None:  # the slots of removed factors are empty
                graph.add(factor)
        stamps = gtsam.FixedLagSmootherKeyTimestampMap()
        for key, t in old.timestamps().items():
            stamps.insert((key, t))
        self.smoother = gtsam.IncrementalFixedLagSmoother(float(self.window),
                                                          _isam2_params(qr=True))
        try:
            self._solve(graph, old.getLinearizationPoint(), stamps)
        except RuntimeError as again:
            LOG.debug('eliminating the window anew by QR failed too (%s)', again)
            self.smoother = old
            raise exc from None
        self.rebuilds += 1
        LOG.info('iSAM2 failed (%s); the window was eliminated anew by QR',
                 str(exc).split('\n')[0])

    def landmarks(self, js) -> Dict[int, np.ndarray]:
        """Current estimates of the landmarks ``js`` still in the window (one back-substitution
        for all of them)."""
        alive = self.alive_landmarks(js)
        if not alive:
            return {}
        est = self.smoother.calculateEstimate()
        return {j: np.asarray(est.atPoint3(_L | j)) for j in alive}


class StereoSmoother(_FixedLag):
    """Sliding-window stereo bundle adjustment, updated incrementally one keyframe at a time.

    A landmark leaves the window with the keyframe that first observed it
    (``stamp_at_first``); the mapper starts a new landmark for the same track after that.

    Args:
        calib: rectified stereo calibration.
        window: keyframes kept in the window (the smoother lag, in keyframes).
        pixel_sigma: measurement noise (px) of u_left, u_right, v at the finest keypoints
            (an observation's noise multiple scales it).
        huber_k: Huber threshold in sigmas.
        iterations: extra iSAM2 update steps per keyframe (relinearisation).
    """

    stamp_at_first = True

    def __init__(self, calib: StereoCalib, window: int = 8, pixel_sigma: float = 1.0,
                 huber_k: float = 1.345, iterations: int = 0):
        super().__init__(window, iterations)
        gtsam = _gtsam()
        self.calib = calib
        self.K = gtsam.Cal3_S2Stereo(calib.fx, calib.fy, 0.0, calib.cx, calib.cy, calib.baseline)
        self.K_mono = gtsam.Cal3_S2(calib.fx, calib.fy, 0.0, calib.cx, calib.cy)
        self.pixel_sigma, self.huber_k = pixel_sigma, huber_k
        # robust noise models by (dimension, sigma multiple)
        self._noises: Dict[Tuple[int, float], object] = {}
        # As loose for every new keyframe pose as the landmark prior (1000 m, 1000 rad: no pull
        # at all): a keyframe whose landmarks all lose their Jacobian would otherwise leave an
        # indeterminate system and restart the window
        self.loose_pose_prior = gtsam.noiseModel.Isotropic.Sigma(6, 1000.0)

    def add_keyframe(self, k: int, T_world_cam: np.ndarray,
                     new_landmarks: Dict[int, np.ndarray],
                     observations: Iterable[Tuple[float, ...]],
                     prior_sigma: Optional[float] = None) -> np.ndarray:
        """Insert keyframe k and optimise.

        Args:
            k: keyframe number (strictly increasing).
            T_world_cam: 4x4 initial guess.
            new_landmarks: landmark id -> (3,) world point initial guess.
            observations: (keyframe, landmark, u_left, u_right, v[, noise]) rows: noise
                in units of the pixel sigma (rounded to a tenth; 1 if left out);
                keyframes must be alive, landmarks alive or new.
            prior_sigma: add a pose prior with this sigma (first keyframe, re-initialisation).
        Returns:
            4x4 optimised T_world_cam of keyframe k.
        """
        gtsam = _gtsam()
        graph, values, stamps, pose = self._begin(k, T_world_cam)
        if prior_sigma is not None:
            prior = gtsam.noiseModel.Isotropic.Sigma(6, prior_sigma)
        elif self.latest is None:
            prior = self.prior_noise  # the first pose: fixed
        else:
            prior = self.loose_pose_prior
        graph.add(gtsam.PriorFactorPose3(self.X(k), pose, prior))
        self._new_landmarks(graph, values, new_landmarks)
        touched = {}
        stereo, mono = gtsam.GenericStereoFactor3D, gtsam.GenericProjectionFactorCal3_S2
        for kf, j, ul, ur, v, *noise in observations:
            sigma = noise[0] if noise else 1.0
            if ur == ur:  # finite: a stereo measurement
                graph.add(stereo(gtsam.StereoPoint2(ul, ur, v), self._noise(3, sigma),
                                 _X | kf, _L | j, self.K))
            else:
                graph.add(mono(gtsam.Point2(ul, v), self._noise(2, sigma), _X | kf, _L | j,
                               self.K_mono))
            touched[j] = min(touched.get(j, kf), kf)
        self._update(k, graph, values, stamps, touched)
        return self.smoother.calculateEstimatePose3(self.X(k)).matrix()

    def _noise(self, dim: int, multiple: float):
        """The Huber-robust isotropic model of ``dim`` coordinates with ``multiple`` x the
        pixel sigma (cached by tenths)."""
        m = float(multiple)
        key = (dim, round(m if m >= 1.0 else 1.0, 1))  # NaN or below 1: the pixel sigma
        model = self._noises.get(key)
        if model is None:
            gtsam = _gtsam()
            model = self._noises[key] = gtsam.noiseModel.Robust.Create(
                gtsam.noiseModel.mEstimator.Huber.Create(self.huber_k),
                gtsam.noiseModel.Isotropic.Sigma(dim, key[1] * self.pixel_sigma))
        return model


class MonoSmoother(_FixedLag):
    """Monocular sliding-window bundle adjustment over every frame, updated incrementally.

    Args:
        calib: pinhole calibration (the baseline is not used).
        window: frames kept in the window (the smoother lag, in frames).
        pixel_sigma: measurement noise (px) of u and v.
        huber_k: Huber threshold in sigmas.
    """

    RANGE_SIGMA = 0.01  # m, of a known step length
    MIN_RANGE = 1e-3    # m; a shorter step gets no range factor (its gradient is undefined at 0)

    def __init__(self, calib: StereoCalib, window: int = 10, pixel_sigma: float = 1.0,
                 huber_k: float = 1.345):
        super().__init__(window)
        gtsam = _gtsam()
        self.K = gtsam.Cal3_S2(calib.fx, calib.fy, 0.0, calib.cx, calib.cy)
        self.noise = gtsam.noiseModel.Robust.Create(
            gtsam.noiseModel.mEstimator.Huber.Create(huber_k),
            gtsam.noiseModel.Isotropic.Sigma(2, pixel_sigma))
        self.range_noise = gtsam.noiseModel.Isotropic.Sigma(1, self.RANGE_SIGMA)

    def add_frame(self, k: int, T_world_cam: np.ndarray,
                  motion: Optional[Tuple[int, np.ndarray, float, float]],
                  step: Optional[float], new_landmarks: Dict[int, np.ndarray],
                  observations: Iterable[Tuple[int, int, float, float]]) -> Dict[int, np.ndarray]:
        """Insert frame k and optimise.

        Args:
            k: frame number (strictly increasing; the first one is fixed at its guess).
            T_world_cam: 4x4 initial guess.
            motion: (frame f, T_f_k 4x4, rotation sigma rad, translation sigma m): the motion
                from an alive frame f to k, or None.
            step: metres between the previous frame added and k, or None (unknown).
            new_landmarks: landmark id -> (3,) world point initial guess.
            observations: (frame, landmark, u, v) rows; frames must be alive, landmarks alive
                or new (alive after this update: newest observation >= k - window + 1).
        Returns:
            frame -> 4x4 optimised T_world_cam of every frame in the window.
        """
        gtsam = _gtsam()
        graph, values, stamps, pose = self._begin(k, T_world_cam)
        if self.latest is None:
            graph.add(gtsam.PriorFactorPose3(self.X(k), pose, self.prior_noise))
        if motion is not None and self.latest is not None:
            f, T, rot, trans = motion
            sigmas = np.r_[rot, rot, rot, trans, trans, trans]
            graph.add(gtsam.BetweenFactorPose3(self.X(f), self.X(k), gtsam.Pose3(T),
                                               gtsam.noiseModel.Diagonal.Sigmas(sigmas)))
        if step is not None and step > self.MIN_RANGE and self.latest is not None:
            graph.add(gtsam.RangeFactorPose3(self.X(self.latest), self.X(k), float(step),
                                             self.range_noise))
        self._new_landmarks(graph, values, new_landmarks)
        touched = {}
        factor, point2, noise, K = gtsam.GenericProjectionFactorCal3_S2, gtsam.Point2, \
            self.noise, self.K
        for f, j, u, v in observations:
            graph.add(factor(point2(u, v), noise, _X | f, _L | j, K))
            touched[j] = max(touched.get(j, -1), f)
        self._update(k, graph, values, stamps, touched)
        est = self.smoother.calculateEstimate()
        return {f: est.atPose3(_X | f).matrix() for f in range(max(0, k - self.window + 1), k + 1)
                if est.exists(_X | f)}
