"""Per-frame data association: which keypoint of this frame is which landmark.

:class:`MapTracker` (stereo, the default): a local map of landmarks (world point, latest
descriptor) is projected into the current left image at the constant-velocity pose prediction;
each landmark is matched by descriptor inside a search window around its predicted pixel, the
pose is solved by PnP-RANSAC + motion-only refinement (from the last pose too, and from the whole
local map, when the prediction explains too few landmarks), and unmatched keypoints with a stereo
correspondence start new landmarks. A landmark keeps its id as long as the map holds it, so it
collects an observation in every frame that sees it (not only in consecutive frames).

:class:`TemporalTracker` (monocular): frame-to-frame mutual nearest neighbours verified by a
fundamental-matrix RANSAC; a track keeps its id while it is matched in consecutive frames.

Both return :class:`~hndesc_ros.types.Observations`, the contract with the back end.
"""
from __future__ import annotations

import time
from typing import Callable, Dict, Optional, Tuple, Union

import cv2
import numpy as np
from scipy.spatial import cKDTree

from hndesc_ros.config import MatchingConfig, VOConfig
from hndesc_ros.features.matching import match_numpy, nearest_in_groups
from hndesc_ros.features.stereo import klt_forward_backward
from hndesc_ros.se3 import inv, transform_points
from hndesc_ros.types import (SCORE_FOLLOWED, SCORE_FOLLOWED_NOISY, Features, Observations,
                              StereoCalib)
from hndesc_ros.vo.geometry import (ConstantVelocity, pnp_from_prediction, project, refine_pnp,
                                    solve_pnp, stereo_depth_ok, stereo_projection,
                                    triangulate_stereo)
from hndesc_ros.vo.landmarks import fuse, stereo_information, with_disparity_change


# a frame whose pose explains less than this share of the last frame's landmarks is suspect:
# a KLT frame is extracted instead, a frame with features tries other starts (MapTracker)
MIN_TRACKED_SHARE = 0.25
# a landmark followed by KLT (MapTracker._reobserve) is kept within this many PnP gates of its
# projection: KLT follows the patch that was observed, and the point's own error (about 1 px on
# KITTI 06: the median distance from KLT's answer to the projection) is the larger part; at
# one gate a quarter of them were refused (family of 06: 0.077 m against 0.056 at two)
REOBSERVE_GATE = 2.0
# a keypoint up to this many times the size of the frame's finest ones is located to
# vo.pixel_sigma; a bigger (coarser-scale) one proportionally worse (keypoint_noise)
FINE_SIZES = 2.0


def keypoint_noise(sizes: np.ndarray) -> np.ndarray:
    """Localisation noise of each keypoint in units of ``vo.pixel_sigma``, from its size.

    A keypoint found at a coarse scale of the detector's pyramid is located only to that
    scale's pixels: on KITTI 06 the reprojection error of correctly matched SIFT keypoints
    grows from 0.7 px (median) at the finest sizes to 2 px at four times that size and 4 px
    at ten times (ORB-SLAM weights its pyramid levels the same way). The finest size is the
    frame's 5th percentile, so the rule follows whatever resolution the detector ran at.

    Args:
        sizes: (N,) keypoint sizes in pixels (0: unknown, e.g. learned keypoints).
    Returns:
        (N,) float32 >= 1: max(1, size / (``FINE_SIZES`` x the finest size)).
    """
    sizes = np.asarray(sizes, np.float32)
    known = sizes > 0
    if known.sum() < 10:
        return np.ones(len(sizes), np.float32)
    finest = np.percentile(sizes[known], 5)
    return np.maximum(1.0, sizes / np.float32(FINE_SIZES * finest)).astype(np.float32)


def match_gain(image: np.ndarray, reference: np.ndarray, tolerance: float = 0.05) -> np.ndarray:
    """(H, W) uint8 ``image`` with its levels scaled to the mean of ``reference`` when the two
    differ by more than ``tolerance`` (a change of the camera's gain between two frames:
    auto-exposure, flicker), so that KLT's brightness constancy holds; else ``image`` itself."""
    mean, ref = float(image.mean()), float(reference.mean())
    if mean <= 1.0 or abs(ref / mean - 1.0) <= tolerance:
        return image
    return cv2.convertScaleAbs(image, alpha=ref / mean)


class LocalMap:
    """Landmarks the tracker matches against (struct of arrays, M rows).

    Attributes:
        ids: (M,) int64 landmark ids. points: (M, 3) float64 world positions.
        descriptors: (M, D) float32 descriptor of the latest observation.
        last_seen: (M,) int64 frame of the latest observation.
        observed: (M,) int64 frames that observed it.
        info: (M, 3, 3) information of each point (:mod:`~hndesc_ros.vo.landmarks`).
    """

    def __init__(self):
        self.ids = np.zeros(0, np.int64)
        self.points = np.zeros((0, 3))
        self.descriptors = np.zeros((0, 0), np.float32)
        self.last_seen = np.zeros(0, np.int64)
        self.observed = np.zeros(0, np.int64)
        self.info = np.zeros((0, 3, 3))

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, ids: np.ndarray, points: np.ndarray, descriptors: np.ndarray,
            frame: int, info: Optional[np.ndarray] = None) -> None:
        """Append new landmarks (``info``: (K, 3, 3) information of their points; default
        1 / m^2, a metre's uncertainty each way)."""
        if self.descriptors.shape[1] != descriptors.shape[1]:  # first use (or a new model)
            self.__init__()
            self.descriptors = np.zeros((0, descriptors.shape[1]), np.float32)
        self.ids = np.r_[self.ids, ids]
        self.points = np.r_[self.points, points]
        self.descriptors = np.r_[self.descriptors, descriptors.astype(np.float32)]
        self.last_seen = np.r_[self.last_seen, np.full(len(ids), frame, np.int64)]
        self.observed = np.r_[self.observed, np.ones(len(ids), np.int64)]
        self.info = np.r_[self.info, np.tile(np.eye(3), (len(ids), 1, 1)) if info is None
                          else info]

    def seen(self, rows: np.ndarray, frame: int) -> None:
        """The landmarks at ``rows`` are observed in ``frame``."""
        self.last_seen[rows] = frame
        self.observed[rows] += 1

    def keep(self, mask: np.ndarray) -> None:
        """Keep the rows where ``mask`` is True."""
        self.ids, self.points = self.ids[mask], self.points[mask]
        self.descriptors = self.descriptors[mask]
        self.last_seen = self.last_seen[mask]
        self.observed = self.observed[mask]
        self.info = self.info[mask]

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        """(K,) rows of landmark ``ids`` (-1 where the map no longer holds one)."""
        if not len(self.ids) or not len(ids):
            return np.full(len(ids), -1, np.int64)
        order = np.argsort(self.ids)
        pos = np.clip(np.searchsorted(self.ids, ids, sorter=order), 0, len(order) - 1)
        rows = order[pos]
        return np.where(self.ids[rows] == ids, rows, -1)

    def set_points(self, ids: np.ndarray, points: np.ndarray) -> int:
        """Replace the positions of the landmarks in ``ids`` (refined by the mapper); ids no
        longer in the map are ignored. Returns how many were updated."""
        rows = self.rows_of(ids)
        hit = rows >= 0
        self.points[rows[hit]] = points[hit]
        return int(hit.sum())


def match_in_windows(proj: np.ndarray, map_desc: np.ndarray, kp: np.ndarray,
                     kp_desc: np.ndarray, radius: float, ratio: float,
                     max_distance: float) -> Tuple[np.ndarray, np.ndarray]:
    """Match projected landmarks to keypoints by descriptor inside square search windows.

    Only the candidate pairs inside a window are compared (a k-d tree finds them), so the cost
    grows with the number of candidates, not with landmarks x keypoints.

    Args:
        proj: (M, 2) predicted pixels of the landmarks; map_desc: (M, D) unit descriptors.
        kp: (N, 2) keypoints; kp_desc: (N, D) unit descriptors.
        radius: half-size of the window (px).
        ratio: Lowe ratio between the best and second-best candidate of a landmark.
        max_distance: largest accepted L2 descriptor distance.
    Returns:
        (landmark rows (K,), keypoint rows (K,)), one-to-one.
    """
    empty = np.zeros(0, np.int64), np.zeros(0, np.int64)
    if not len(proj) or not len(kp):
        return empty
    pairs = cKDTree(proj).sparse_distance_matrix(cKDTree(kp), radius, p=np.inf,
                                                 output_type='ndarray')
    if not len(pairs):
        return empty
    lm, ki = pairs['i'].astype(np.int64), pairs['j'].astype(np.int64)
    sim = np.einsum('ij,ij->i', map_desc[lm], kp_desc[ki])
    dist = np.sqrt(np.maximum(2.0 - 2.0 * sim, 0.0))
    order = np.lexsort((dist, lm))          # by landmark, then by distance
    lm, ki, dist = lm[order], ki[order], dist[order]
    first, second = nearest_in_groups(lm, dist)  # the best candidate of each landmark
    ok = first & (dist <= max_distance) & (dist <= ratio * second)
    lm, ki, dist = lm[ok], ki[ok], dist[ok]
    # one landmark per keypoint: the closest descriptor wins
    order = np.lexsort((dist, ki))
    lm, ki = lm[order], ki[order]
    best = np.r_[True, ki[1:] != ki[:-1]]
    return lm[best], ki[best]


class MapTracker:
    """Stereo tracking against a local map (see the module docstring).

    Args:
        calib: rectified stereo calibration.
        matching: ratio and distance thresholds of the descriptor matching.
        vo: PnP thresholds, search radius, depth range, map ageing.
    """

    def __init__(self, calib: StereoCalib, matching: Optional[MatchingConfig] = None,
                 vo: Optional[VOConfig] = None):
        self.calib = calib
        self.mcfg, self.cfg = matching or MatchingConfig(), vo or VOConfig()
        self.map = LocalMap()
        # the search windows are angles (the prediction's error is one): pixels of this camera
        self.search_px = calib.fx * np.tan(np.deg2rad(self.cfg.search_radius_deg))
        self.refine_px = calib.fx * np.tan(np.deg2rad(self.cfg.refine_radius_deg))
        self.motion = ConstantVelocity()  # T_world_cam of the latest frame, its prediction
        self.next_id = 0
        self.frames = 0
        self.lost = 0         # frames whose pose could not be measured (prediction kept)
        self.unseen = 0       # ... of them just before this frame (the map went unseen)
        self.relocalised = 0  # frames tracked only by matching against the whole local map
        self.disparity_offset = 0.0  # px, the back end's (with its refined landmarks)
        self._last = None     # (image, ids, (K, 2) pixels) of the last frame (for KLT)
        self._older = None    # ... and of the frame before it
        self._refined = None  # (frame, T_world_cam) of the latest frame that refined points
        self.last_observed = 0  # landmarks the last frame observed

    def apply_map_update(self, ids: np.ndarray, points: np.ndarray) -> int:
        """Landmark positions refined by the mapper (world frame)."""
        return self.map.set_points(np.asarray(ids, np.int64), np.asarray(points, float))

    def set_disparity_offset(self, px: float) -> None:
        """Use the back end's disparity offset (px) for new landmarks; the map's points move
        along their ray from the latest camera to the depth their disparity there gives with
        the new offset (a point from an earlier offset would fail PnP's gate, and die, once
        the camera moves: KITTI 01's offset of 0.8 px is 6 % of the depth at 30 m)."""
        change = px - self.disparity_offset
        self.disparity_offset = px
        if not change or not len(self.map):
            return
        self.map.points = with_disparity_change(self.map.points, self.motion.T, change,
                                                self.calib)

    def _project(self, T_world_cam: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Map rows in front of the camera and inside the image -> (rows, (K, 2) pixels)."""
        c = self.calib
        T_cam_world = inv(T_world_cam)
        front = np.nonzero(transform_points(T_cam_world, self.map.points)[:, 2]
                           > self.cfg.min_depth)[0]
        uv = project(self.map.points[front], T_cam_world, c)
        w, h = (c.width or np.inf), (c.height or np.inf)
        inside = (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)
        return front[inside], uv[inside]

    def _associate(self, feats: Features, T_guess: np.ndarray,
                   radius: float) -> Tuple[np.ndarray, np.ndarray]:
        rows, proj = self._project(T_guess)
        lm, kp = match_in_windows(proj, self.map.descriptors[rows], feats.keypoints,
                                  feats.descriptors, radius, self.mcfg.ratio,
                                  self.mcfg.max_distance)
        return rows[lm], kp

    def _associate_all(self, feats: Features) -> Tuple[np.ndarray, np.ndarray]:
        """Every landmark of the local map against every keypoint (no window): for when the
        prediction is wrong (a sudden stop or turn, frames lost on the way)."""
        m = match_numpy(self.map.descriptors, feats.descriptors, self.mcfg.ratio,
                        self.mcfg.max_distance)
        return m.indices[:, 0], m.indices[:, 1]

    def track(self, feats: Features, u_right: np.ndarray, stamp: float = 0.0,
              index: int = 0, image: Optional[np.ndarray] = None,
              stereo_at: Optional[Callable[[np.ndarray], np.ndarray]] = None,
              noisy: bool = False) -> Observations:
        """One frame: left Features and (N,) right u of each keypoint (NaN: no stereo).

        With ``image`` (the (H, W) uint8 left image) and ``vo.klt_reobserve``, landmarks of
        the last frame that no keypoint here matched are followed by KLT
        (:meth:`_reobserve`); ``stereo_at`` ((K, 2) pixels -> (K,) right u, NaN: none), when
        given, gives them stereo.

        ``noisy``: the front end blurred this pair against its noise. KLT still re-observes
        in it, but ends its chains there: what KLT follows from this pair into the next
        frames is its detected keypoints, never its followed pixels (what it follows into
        it comes from the last two frames as usual: a clean frame before it may hand on
        followed pixels; every noisy frame after it, detections only). In the dark copies KLT
        lands 0.23-0.33 px from where clean images put it (re-detection 0.69 px, and only
        half as often), but a pixel followed from a followed pixel carries the first one's
        error on: a random walk, correlated from frame to frame, which the bundle adjustment
        takes for independent observations. Chained (as on clean images) the
        re-observations made 01 dark worse (0.140 to 0.189 m, and moved 06's disparity
        offset); one step from a detection they take 06 dark from 0.033 to 0.028 m (median
        of 20 draws). The followed pixels are scored :data:`SCORE_FOLLOWED_NOISY`, so that
        the back end leaves their right u out of the disparity offset, and the next frame's
        pose search compares its matches with this frame's detected ones.

        Returns:
            Observations: matched landmarks (PnP inliers) and the new landmarks started here.
        """
        t0 = time.perf_counter()
        c = self.cfg
        n = len(feats)
        noise = keypoint_noise(feats.scales)
        guess = self.motion.predict(stamp)
        ids = np.full(n, -1, np.int64)
        T_new, tracked = guess, self.frames == 0
        rows = kp = np.zeros(0, np.int64)
        if self.frames == 0:
            T_new = np.eye(4)
        elif len(self.map) and n:
            T_cw, rows, kp, relocalising = self._pose_search(feats, guess)
            if T_cw is not None:
                tracked = True
                self.relocalised += relocalising
                T_new = inv(T_cw)
                ids[kp] = self.map.ids[rows]
                self.map.descriptors[rows] = feats.descriptors[kp]
                self.map.seen(rows, self.frames)
        # right u with the back end's disparity offset removed, so that points agree with
        # its refined landmarks
        u_true = u_right - np.float32(self.disparity_offset)
        stereo_ok = stereo_depth_ok(feats.keypoints, u_true, self.calib, c.min_depth,
                                    c.max_depth)
        if tracked:
            self._refine(rows, T_new, feats.keypoints[kp],
                         np.where(stereo_ok[kp], u_true[kp], np.nan), noise[kp])
        if not tracked:
            self.lost += 1
        self.unseen = 0 if tracked else self.unseen + 1
        matched = int((ids >= 0).sum())
        t1 = time.perf_counter()
        # new landmarks: unmatched keypoints with a usable stereo depth
        new = (ids < 0) & stereo_ok
        k = int(new.sum())
        if k:
            ids[new] = np.arange(self.next_id, self.next_id + k)
            self.next_id += k
            cam = triangulate_stereo(feats.keypoints[new], u_true[new], self.calib)
            world = transform_points(T_new, cam)
            self.map.add(ids[new], world, feats.descriptors[new], self.frames,
                         stereo_information(world, T_new, self.cfg.pixel_sigma * noise[new],
                                            self.calib))
        self.motion.update(T_new, stamp, tracked)
        keep = ids >= 0
        obs_ids, obs_uv = ids[keep], feats.keypoints[keep]
        obs_ur, obs_sc, obs_noise = u_right[keep], feats.scores[keep], noise[keep]
        detected = len(obs_ids)
        if image is not None and c.klt_reobserve and tracked:
            k_ids, k_uv, k_ur = self._reobserve(image, T_new, obs_ids,
                                                max(0, c.klt_max_landmarks - matched),
                                                stereo_at)
            obs_ids, obs_uv = np.r_[obs_ids, k_ids], np.r_[obs_uv, k_uv]
            obs_ur = np.r_[obs_ur, k_ur]
            score = SCORE_FOLLOWED_NOISY if noisy else SCORE_FOLLOWED
            obs_sc = np.r_[obs_sc, np.full(len(k_ids), score, np.float32)]
            obs_noise = np.r_[obs_noise, np.ones(len(k_ids), np.float32)]
        # what this frame hands on (noisy: its detections only, no KLT chains)
        self.last_observed = detected if noisy else len(obs_ids)
        if image is not None:  # the next KLT frame (or re-observation) starts from here
            handed = self.last_observed
            self._older, self._last = self._last, (image, obs_ids[:handed],
                                                   obs_uv[:handed].astype(np.float32))
        self._end_frame()
        return Observations(stamp, index, obs_ids, obs_uv, obs_ur, obs_sc,
                            {'map_matching': (t1 - t0) * 1e3,
                             'map_update': (time.perf_counter() - t1) * 1e3}, obs_noise)

    def _solve_at(self, feats: Features, T_guess: np.ndarray, radius: float
                  ) -> Tuple[Optional[np.ndarray], np.ndarray, np.ndarray]:
        """Landmarks matched in windows of ``radius`` px around their projection at the pose
        ``T_guess`` (T_world_cam), then PnP refined from that pose (RANSAC only when that
        explains too few: about half of a wide window's candidates are wrong on KITTI), within
        :meth:`_gates`. Returns (T_cam_world or None, (K,) map rows, (K,) keypoints) of the
        inliers."""
        c = self.cfg
        rows, kp = self._associate(feats, T_guess, radius)
        if len(rows) < c.min_inliers:
            return None, rows[:0], kp[:0]
        T_cw, inl = pnp_from_prediction(self.map.points[rows], feats.keypoints[kp], self.calib,
                                        inv(T_guess), self._gates(rows, T_guess),
                                        c.pnp_iterations, c.min_inliers, 0.3)
        if T_cw is None:
            return None, rows[:0], kp[:0]
        return T_cw, rows[inl], kp[inl]

    def _pose_search(self, feats: Features, guess: np.ndarray
                     ) -> Tuple[Optional[np.ndarray], np.ndarray, np.ndarray, bool]:
        """The pose of a frame with features, from the best supported of a few starts.

        First the constant-velocity prediction ``guess`` (T_world_cam). When that explains
        fewer than ``MIN_TRACKED_SHARE`` of the last frame's landmarks, the motion model may be
        what is wrong (a sudden stop, a start, a jolt): the last pose (standing still) is tried
        too, and if that is weak as well, the whole local map without windows (relocalisation).
        The start with the most PnP inliers wins; a narrow search at its pose then collects
        every landmark it explains and refines it.

        Returns:
            (T_cam_world or None, (K,) map rows, (K,) keypoints of the inliers, relocalised).
        """
        c = self.cfg
        # wider while the motion is unknown (the second frame)
        wide = self.search_px * (3.0 if self.frames == 1 else 1.0)
        need = max(c.min_inliers, MIN_TRACKED_SHARE * self.last_observed)
        best = self._solve_at(feats, guess, wide) + (False,)
        if len(best[1]) < need and not np.allclose(self.motion.T, guess):
            still = self._solve_at(feats, self.motion.T, wide) + (False,)
            best = max(best, still, key=lambda b: len(b[1]))
        if len(best[1]) < need:  # match the whole local map
            rows, kp = self._associate_all(feats)
            if len(rows) >= c.min_inliers:
                T_cw, inl = solve_pnp(self.map.points[rows], feats.keypoints[kp], self.calib,
                                      inv(guess), c.pnp_reprojection_px, c.pnp_iterations)
                if T_cw is not None and len(inl) > len(best[1]):
                    best = (T_cw, rows[inl], kp[inl], True)
        T_cw, rows, kp, relocalised = best
        if T_cw is None or len(rows) < c.min_inliers:
            return None, rows[:0], kp[:0], False
        rows, kp = self._associate(feats, inv(T_cw), self.refine_px)
        T_ref, inl = refine_pnp(self.map.points[rows], feats.keypoints[kp], self.calib, T_cw,
                                self._gates(rows, inv(T_cw)))
        if len(inl) < c.min_inliers:
            return None, rows[:0], kp[:0], False
        return T_ref, rows[inl], kp[inl], relocalised

    def _gates(self, rows: np.ndarray, T_world_cam: np.ndarray) -> Union[float, np.ndarray]:
        """PnP gates (px) for the landmarks at map ``rows`` seen from ``T_world_cam``.

        While the map is tracked frame after frame (its points were refined a frame ago) the
        gate is ``vo.pnp_reprojection_px``. On a frame that follows lost frames (``unseen``:
        black pairs, a covered lens) each landmark gets its own gate, widened by its own
        projected uncertainty: the landmarks were last measured where the camera was before
        the loss, and each point's error (mostly its depth, along its old ray) now reprojects
        to pixels it did not then. The point's covariance (the inverse of the information the
        tracker keeps) taken to this camera's pixels adds to the two coordinates' noise
        (2 ``vo.pixel_sigma`` squared), and the gate grows by the square root of the ratio. No
        gate exceeds the search window around the projection (``vo.search_radius_deg``), and
        a point whose uncertainty cannot be taken (a degenerate information) gets that
        window. The information is the tracker's own (not the back end's refinement, which
        moves points without one), so it is on the cautious side.

        Args:
            rows: (K,) map rows.
            T_world_cam: 4x4 pose the landmarks are seen from.
        Returns:
            ``vo.pnp_reprojection_px``, or (K,) gates after lost frames.
        """
        c = self.cfg
        if not self.unseen or not len(rows):
            return c.pnp_reprojection_px
        T_cw = inv(T_world_cam)
        J = stereo_projection(transform_points(T_cw, self.map.points[rows]),
                              self.calib)[1][:, :2] @ T_cw[:3, :3]       # (K, 2, 3) px / m
        cov = np.linalg.inv(self.map.info[rows] + 1e-9 * np.eye(3))        # (K, 3, 3) m^2
        var = np.einsum('kij,kjl,kil->k', J, cov, J)  # u and v variances summed (px^2)
        gates = c.pnp_reprojection_px * np.sqrt(1.0 + var / (2.0 * c.pixel_sigma ** 2))
        return np.where(np.isfinite(gates), np.minimum(gates, self.search_px), self.search_px)

    def _refine(self, rows: np.ndarray, T_world_cam: np.ndarray, uv: np.ndarray,
                u_right: Optional[np.ndarray], noise: Optional[np.ndarray]) -> None:
        """The points of map ``rows`` refined by their observations in a frame of pose
        ``T_world_cam`` (:func:`~hndesc_ros.vo.landmarks.fuse`, a right u beyond
        ``vo.stereo_gate_px`` left out): (K, 2) pixels, (K,) right u without the offset (None
        or NaN: no stereo) and noise multiples (None: 1). Nothing is refined while the camera
        stands where the last refining frame stood (:meth:`_standing`)."""
        if not self.cfg.refine_landmarks or not len(rows):
            return
        if (self._refined is not None and self._refined[0] != self.frames
                and self._standing(T_world_cam, rows)):
            return
        self._refined = (self.frames, T_world_cam)
        k = len(rows)
        ur = np.full(k, np.nan) if u_right is None else u_right
        sigma = self.cfg.pixel_sigma * (np.ones(k) if noise is None else noise)
        self.map.points[rows], self.map.info[rows] = fuse(
            self.map.points[rows], self.map.info[rows], T_world_cam, uv, ur, sigma, self.calib,
            self.cfg.stereo_gate_px)

    def _standing(self, T_world_cam: np.ndarray, rows: np.ndarray) -> bool:
        """Whether the camera at ``T_world_cam`` stands where the last refining frame stood:
        moved less than ``vo.still_parallax`` degrees seen from the median depth of map
        ``rows`` (a turn on the spot counts as standing: it adds no parallax). Its
        observations then repeat that frame's instead of adding to them (a car at a red
        light would otherwise make its landmarks' points ever more certain of the same
        measurement)."""
        T_prev = self._refined[1]
        depth = np.median(transform_points(inv(T_world_cam), self.map.points[rows])[:, 2])
        moved = np.linalg.norm(T_world_cam[:3, 3] - T_prev[:3, 3])
        return depth > 0 and np.degrees(moved / depth) < self.cfg.still_parallax

    def _end_frame(self) -> None:
        """Forget the landmarks unseen for ``vo.map_max_age`` frames; count the frame."""
        self.map.keep(self.frames - self.map.last_seen <= self.cfg.map_max_age)
        self.frames += 1

    def _follow(self, image: np.ndarray, T_world_cam: np.ndarray,
                skip: Optional[np.ndarray] = None,
                budget: Optional[int] = None, source: Optional[tuple] = None
                ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Landmarks observed in the last frame (or ``source``: (image, ids, pixels) of an
        earlier one; except ``skip``) followed from their pixel there into ``image`` by KLT
        (:func:`~hndesc_ros.features.stereo.klt_forward_backward`, within 0.5 px back), started at
        their projection at ``T_world_cam``; at most ``budget`` of them (default
        ``vo.klt_max_landmarks``), the most observed first. Returns ((K,) map rows, (K, 2) float32
        pixels inside the image, (K, 2) their projection at ``T_world_cam``)."""
        empty = np.zeros(0, np.int64), np.zeros((0, 2), np.float32), np.zeros((0, 2))
        source = self._last if source is None else source
        if source is None:
            return empty
        prev_image, prev_ids, prev_uv = source
        if prev_image.shape != image.shape:
            return empty
        cand = np.ones(len(prev_ids), bool) if skip is None else ~np.isin(prev_ids, skip)
        rows = self.map.rows_of(prev_ids[cand])
        cand_idx = np.nonzero(cand)[0][rows >= 0]
        rows = rows[rows >= 0]
        T_cw = inv(T_world_cam)
        front = transform_points(T_cw, self.map.points[rows])[:, 2] > self.cfg.min_depth
        rows, cand_idx = rows[front], cand_idx[front]
        budget = self.cfg.klt_max_landmarks if budget is None else budget
        if len(rows) > budget:  # bounded cost: a textured room keeps 1,300 landmarks a frame
            best = np.argsort(-self.map.observed[rows], kind='stable')[:budget]
            rows, cand_idx = rows[best], cand_idx[best]
        if not len(rows):
            return empty
        pred = project(self.map.points[rows], T_cw, self.calib)
        p1, ok = klt_forward_backward(match_gain(prev_image, image), image, prev_uv[cand_idx],
                                      pred.astype(np.float32), self.mcfg.klt_window,
                                      max_back_px=0.5)
        h, w = image.shape[:2]
        ok &= (p1[:, 0] >= 0) & (p1[:, 0] < w) & (p1[:, 1] >= 0) & (p1[:, 1] < h)
        return rows[ok], p1[ok], pred[ok]

    def _reobserve(self, image: np.ndarray, T_world_cam: np.ndarray, seen: np.ndarray,
                   budget: int, stereo_at: Optional[Callable[[np.ndarray], np.ndarray]] = None
                   ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Landmarks of the last frame not among ``seen`` (this frame's matches), then those
        of the frame before it that neither found, followed by KLT (:meth:`_follow`, at most
        ``budget`` in all) and kept within ``REOBSERVE_GATE`` x ``vo.pnp_reprojection_px`` of
        their projection at this frame's pose; each kept one refines its point by its pixel
        (:meth:`_refine`) and gets the right u that ``stereo_at`` gives. Returns ((K,) ids,
        (K, 2) float32 pixels, (K,) float32 right u as measured, NaN where none).

        The frame before matters because a landmark that KLT lost in the last frame (a KLT
        pair: its patch changed too much, or its young point failed that frame's PnP) is
        rarely re-detected here: on KITTI 01 about 80 landmarks a frame project inside the
        image where no keypoint lies within 2 px of 7 of them. Following them from the frame
        before raised the mean keyframe observations per map point from 3.8 to 4.1 (06) and
        3.6 to 4.0 (01, offset held) over the seven copies of each."""
        rows, uv, pred = self._follow(image, T_world_cam, seen, budget)
        if self._older is not None:  # missed in the last frame: from the one before
            found = np.r_[seen, self.map.ids[rows]]
            r2, uv2, p2 = self._follow(image, T_world_cam, found, budget - len(rows),
                                       self._older)
            rows, uv, pred = np.r_[rows, r2], np.r_[uv, uv2], np.r_[pred, p2]
        if not len(rows):
            return np.zeros(0, np.int64), uv, np.zeros(0, np.float32)
        ok = (np.linalg.norm(uv - pred, axis=1)
              < REOBSERVE_GATE * self.cfg.pnp_reprojection_px)
        rows, uv = rows[ok], uv[ok]
        self.map.seen(rows, self.frames)
        # the point is refined by the KLT pixel alone: the block matching's disparity at a
        # followed (not detected) pixel made 01's copies worse (0.428 against 0.383 m)
        self._refine(rows, T_world_cam, uv, None, None)
        ur = (stereo_at(uv) if stereo_at is not None and len(rows)
              else np.full(len(rows), np.nan, np.float32))
        return self.map.ids[rows], uv, ur

    def track_klt(self, image: np.ndarray, stamp: float = 0.0,
                  index: int = 0) -> Optional[Observations]:
        """A frame tracked without features (``vo.klt_frames``): the landmarks of the last
        frame are followed into the (H, W) uint8 left ``image`` by KLT (:meth:`_follow`, at the
        constant-velocity prediction) and the pose is solved from them (PnP from the
        prediction, RANSAC if that explains too few); when the prediction was off by more than
        half the KLT window (a start after a stop), KLT follows once more from the solved pose.
        No landmark starts here and no right image is used, so the Observations have no
        stereo (the back end may still make the frame a keyframe).

        The Observations hold every landmark KLT followed (there and back), not only this
        PnP's inliers: the back end judges them with its own points and disparity offset. A
        far point whose depth the tracker's map still has wrong (the offset not yet known, a
        point not yet refined) fails the tracker's gate, and without it the back end's pose
        and the offset's pairs saw only points that agree with the offset of the moment
        (KITTI 01's second and third pairs: 0.3 and 0.4 px from 0, 0.6 and 1.5 from 1.0).
        The tracker's own map counts only its inliers as seen.

        Returns:
            Observations of the followed landmarks, or None (nothing changed) when fewer than
            ``vo.min_inliers``, or than ``MIN_TRACKED_SHARE`` of the last frame's landmarks (at
            most ``vo.klt_max_landmarks``), are tracked: the caller then extracts the frame
            and calls :meth:`track`.
        """
        t0 = time.perf_counter()
        c = self.cfg
        if self.frames == 0 or self._last is None:
            return None
        # a share of what KLT may follow (the last frame's matched, new and re-observed
        # landmarks can outnumber vo.klt_max_landmarks)
        need = max(c.min_inliers,
                   MIN_TRACKED_SHARE * min(self.last_observed, c.klt_max_landmarks))
        guess = self.motion.predict(stamp)
        for attempt in range(2):
            rows, uv, pred = self._follow(image, guess)
            if len(rows) < need:
                return None
            T_cw, inl = pnp_from_prediction(self.map.points[rows], uv, self.calib, inv(guess),
                                            c.pnp_reprojection_px, c.pnp_iterations,
                                            c.min_inliers, 0.3)
            if T_cw is None or len(inl) < need:
                return None
            # KLT started from the prediction's pixels; where the motion model was wrong (a
            # start after a stop) by more than half the KLT window, follow again from this
            # pose
            moved = np.linalg.norm(project(self.map.points[rows], T_cw, self.calib) - pred,
                                   axis=1)
            if attempt or np.median(moved) <= self.mcfg.klt_window / 2:
                break
            guess = inv(T_cw)
        followed_ids, followed_uv = self.map.ids[rows], uv   # for the back end
        rows, uv = rows[inl], uv[inl]
        T_new = inv(T_cw)
        self.motion.update(T_new, stamp, True)
        self.unseen = 0
        self.map.seen(rows, self.frames)
        self._refine(rows, T_new, uv, None, None)
        ids = self.map.ids[rows]
        self._older, self._last = self._last, (image, ids, uv)
        self.last_observed = len(ids)
        self._end_frame()
        k = len(followed_ids)
        return Observations(stamp, index, followed_ids, followed_uv,
                            np.full(k, np.nan, np.float32),
                            np.full(k, SCORE_FOLLOWED, np.float32),
                            {'klt_tracking': (time.perf_counter() - t0) * 1e3})


class TemporalTracker:
    """Frame-to-frame tracks for the monocular front end: every keypoint that does not continue
    a track starts one (mutual NN + ratio, verified by a fundamental-matrix RANSAC of
    ``f_ransac_px``; None skips it)."""

    def __init__(self, matching: Optional[MatchingConfig] = None,
                 f_ransac_px: Optional[float] = 1.0):
        self.cfg = matching or MatchingConfig()
        self.f_ransac_px = f_ransac_px
        self.prev: Optional[Features] = None
        self.prev_ids: Optional[np.ndarray] = None
        self.next_id = 0

    def track(self, feats: Features, stamp: float = 0.0, index: int = 0) -> Observations:
        """Temporal matching for one image -> Observations (u_right all NaN)."""
        t0 = time.perf_counter()
        n = len(feats)
        ids = np.full(n, -1, np.int64)
        if self.prev is not None and n and len(self.prev):
            tm = match_numpy(self.prev.descriptors, feats.descriptors, self.cfg.ratio,
                             self.cfg.max_distance).indices
            if self.f_ransac_px and len(tm) >= 8:
                _, mask = cv2.findFundamentalMat(self.prev.keypoints[tm[:, 0]],
                                                 feats.keypoints[tm[:, 1]], cv2.FM_RANSAC,
                                                 self.f_ransac_px, 0.999)
                if mask is not None:
                    tm = tm[mask.ravel() > 0]
            ids[tm[:, 1]] = self.prev_ids[tm[:, 0]]
        new = ids < 0
        ids[new] = np.arange(self.next_id, self.next_id + int(new.sum()))
        self.next_id += int(new.sum())
        if n:  # a blank frame keeps the previous one as the reference for the next frame
            self.prev, self.prev_ids = feats, ids
        return Observations(stamp, index, ids, feats.keypoints, np.full(n, np.nan, np.float32),
                            feats.scores, {'temporal_matching': (time.perf_counter() - t0) * 1e3})


def observation_stats(seen, min_observations: int = 1) -> Dict[str, float]:
    """Landmark statistics of a run from ``[(frame, (M,) ids), ...]``: mean observations per
    landmark and mean track length (frames from first to last observation, inclusive), over
    the landmarks observed at least ``min_observations`` times."""
    empty = {'landmarks': 0, 'obs_per_landmark': 0.0, 'track_length': 0.0}
    if not seen:
        return empty
    frames = np.concatenate([np.full(len(ids), k) for k, ids in seen])
    ids = np.concatenate([np.asarray(ids, np.int64) for _, ids in seen])
    uniq, inv_idx, counts = np.unique(ids, return_inverse=True, return_counts=True)
    first = np.full(len(uniq), np.iinfo(np.int64).max)
    last = np.full(len(uniq), -1)
    np.minimum.at(first, inv_idx, frames)
    np.maximum.at(last, inv_idx, frames)
    keep = counts >= min_observations
    if not keep.any():
        return empty
    uniq, counts, first, last = uniq[keep], counts[keep], first[keep], last[keep]
    return {'landmarks': int(len(uniq)), 'obs_per_landmark': float(counts.mean()),
            'track_length': float((last - first + 1).mean())}
