"""Keypoints + descriptor backend -> Features; the one entry point for every extractor name.

Names: ``residual`` / ``residual-small`` (CNN part sampled at the keypoints, fused with the
refined RootSIFT), ``cnn`` (CNN part only), ``sift`` and ``rootsift`` (handcrafted only).
Keypoints come from SIFT or from the network's detector head (``keypoints='learned'``).
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, Optional, Tuple

import cv2
import numpy as np

from hndesc_ros.config import FeatureConfig
from hndesc_ros.errors import ConfigError, WeightsError
from hndesc_ros.features.detection import select_keypoints
from hndesc_ros.features.image import check_image, to_gray
from hndesc_ros.features.sift import Sift
from hndesc_ros.models.sampling import sample_dense_numpy
from hndesc_ros.types import Features

LOG = logging.getLogger(__name__)
HANDCRAFTED = ('sift', 'rootsift')
LEARNED_KEYPOINT_SIZE = 12.0  # px, SIFT support used at learned keypoints
# The detector head places keypoints on the network's pixel grid, 1 / network_scale image
# pixels apart, and stereo by descriptors takes the right keypoint's position: on KITTI 06 the
# learned-keypoint VO lost track at 0.4 (`residual`: 33 of 51 frames) and at 0.5
# (`residual-small`: 43 of 51), none at 0.75, so learned keypoints never use a smaller image.
LEARNED_MIN_SCALE = 0.75


def prepare_input(image: np.ndarray, in_channels: int) -> np.ndarray:
    """(H, W) or (H, W, 3) uint8 -> (1, C, H8, W8) float32 in [0, 1], replicate-padded to /8."""
    if in_channels == 1:
        img = to_gray(image)[..., None]
    else:
        img = cv2.cvtColor(image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR),
                           cv2.COLOR_BGR2RGB)
    h, w = img.shape[:2]
    ph, pw = (-h) % 8, (-w) % 8
    if ph or pw:
        img = cv2.copyMakeBorder(img, 0, ph, 0, pw, cv2.BORDER_REPLICATE)
        if img.ndim == 2:
            img = img[..., None]
    return np.ascontiguousarray(img.transpose(2, 0, 1)[None], np.float32) / 255.0


def to_network_pixels(xy: np.ndarray, scale) -> np.ndarray:
    """(N, 2) pixel coordinates in an image -> the same points in that image resized by
    ``scale`` (one factor, or (2,) for x and y; pixel centres at integers in both)."""
    if np.all(np.asarray(scale) == 1.0):
        return xy
    return ((xy + 0.5) * scale - 0.5).astype(np.float32)


def resolve_weights(cfg: FeatureConfig) -> str:
    """The weights file for ``cfg``: ``cfg.weights``, else the model shipped for the variant in
    the backend's format (ONNX for onnxruntime and TensorRT, so the runtime needs no torch; the
    checkpoint for torch; for onnxruntime with ``features.int8`` the int8 twin where the
    package ships one)."""
    if cfg.weights:
        return cfg.weights
    from hndesc_ros.inference import resolve_backend
    from hndesc_ros.models.variants import shipped_weights
    backend = resolve_backend(cfg.backend, cfg.device)
    fmt = 'pt' if backend == 'torch' else 'onnx'
    if cfg.int8 and backend == 'onnxruntime':
        path = shipped_weights(cfg.extractor, 'int8.onnx')
        if path.exists():
            return str(path)
        LOG.info('no int8 model shipped for %r: onnxruntime runs it in fp32', cfg.extractor)
    path = shipped_weights(cfg.extractor, fmt)
    if not path.exists():
        raise WeightsError(f'no shipped weights for {cfg.extractor!r} ({path}); train them with '
                           'training/train.py or set features.weights')
    return str(path)


def check_variant(backend, cfg: FeatureConfig, weights: str) -> None:
    """The weights must hold the model ``features.extractor`` names (WeightsError if not)."""
    variant = backend.model_cfg.variant
    if variant != cfg.extractor:
        raise WeightsError(f'{weights} holds the {variant!r} model but features.extractor is '
                           f'{cfg.extractor!r}; pass --extractor {variant} or other weights')


class Extractor:
    """Extract Features from one image according to a FeatureConfig.

    Attributes:
        timings: milliseconds of the last call per stage (keypoints, network, sampling, ...).
    """

    def __init__(self, cfg: Optional[FeatureConfig] = None, backend=None):
        self.cfg = cfg or FeatureConfig()
        c = self.cfg
        handcrafted = c.extractor in HANDCRAFTED
        if handcrafted and c.keypoints == 'learned':
            raise ConfigError('features.keypoints=learned needs a network extractor '
                              '(residual, cnn, residual-small)')
        self.sift = Sift(c.max_keypoints, c.contrast_threshold, c.edge_threshold, c.upright,
                         root=(c.extractor != 'sift'), upsample=c.sift_upsample,
                         max_pixels=c.sift_pixels, min_pixels=c.sift_min_pixels)
        # OpenCV's pool is process-wide: SIFT runs beside the network (and the right image's
        # SIFT beside the left one), so one thread per call keeps two cores busy without
        # oversubscription (bench/extract.py)
        cv2.setNumThreads(c.num_threads)
        self.backend = None
        self._pool = None
        if not handcrafted:
            from hndesc_ros.inference import create_backend
            if backend is None:
                weights = resolve_weights(c)
                backend = create_backend(c.backend, weights, c.device, c.fp16, c.num_threads)
                check_variant(backend, c, weights)
            self.backend = backend
            if c.keypoints == 'learned' and not self.backend.model_cfg.detector:
                raise ConfigError('features.keypoints=learned: this model has no detector head')
            if c.parallel and c.keypoints == 'sift':
                # SIFT (OpenCV) and the dense network (ONNX Runtime / torch) both release the
                # GIL: on two cores they overlap; f then runs alone on the SIFT descriptors
                self._pool = ThreadPoolExecutor(1, thread_name_prefix='hndesc-sift')
        # a TensorRT execution context is not re-entrant (the right image may be extracted in
        # another thread): its calls are serialised; ONNX Runtime and torch run concurrently
        self._net_lock = (threading.Lock() if getattr(self.backend, 'name', '') == 'tensorrt'
                          else contextlib.nullcontext())
        self.timings: Dict[str, float] = {}
        self.network_scale = c.network_scale
        if c.keypoints == 'learned' and c.network_scale < LEARNED_MIN_SCALE:
            self.network_scale = LEARNED_MIN_SCALE
            LOG.info('learned keypoints: the network sees the image at %.2f of its size '
                     '(features.network_scale %.2f is for SIFT keypoints)', LEARNED_MIN_SCALE,
                     c.network_scale)

    def network_scale_for(self, width: int, height: int) -> float:
        """The scale the network sees a ``width`` x ``height`` image at: ``network_scale``,
        or less where it would exceed ``network_pixels`` (SIFT keypoints only: learned ones
        keep their resolution), so that a bigger camera costs no more network time."""
        scale, budget = self.network_scale, self.cfg.network_pixels
        if budget > 0 and self.cfg.keypoints == 'sift' and scale * scale * width * height > budget:
            scale = float(np.sqrt(budget / (width * height)))
        return scale

    def _net(self, fn, *args, **kwargs):
        with self._net_lock:
            return fn(*args, **kwargs)

    def close(self) -> None:
        """Stop the SIFT worker thread (if any)."""
        if self._pool is not None:
            self._pool.shutdown()

    def _timed_sift(self, gray: np.ndarray):
        t = time.perf_counter()
        feats = self.sift(gray)
        return feats, (time.perf_counter() - t) * 1e3

    def extract(self, image: np.ndarray) -> Features:
        """(H, W) gray or (H, W, 3) BGR uint8 image -> Features (descriptors unit rows)."""
        return self.extract_with_sift(image)[0]

    def sift_features(self, image: np.ndarray) -> Features:
        """The handcrafted part alone: SIFT keypoints with (Root)SIFT descriptors."""
        return self.sift(to_gray(check_image(image)))

    def extract_with_sift(self, image: np.ndarray) -> Tuple[Features, Optional[Features]]:
        """Like :meth:`extract`, also returning the (Root)SIFT features at the same keypoints
        (None for a network extractor with learned keypoints and no SIFT branch)."""
        image = check_image(image)
        gray = to_gray(image)
        t0 = time.perf_counter()
        if self.backend is None:
            feats = self.sift(gray)
            self.timings = {'keypoints': (time.perf_counter() - t0) * 1e3}
            return feats, feats
        mc = self.backend.model_cfg
        scale = self.network_scale_for(image.shape[1], image.shape[0])
        net_image = image if scale == 1.0 else cv2.resize(
            image, (max(round(image.shape[1] * scale), 8), max(round(image.shape[0] * scale), 8)),
            interpolation=cv2.INTER_AREA)
        net_in = prepare_input(net_image, mc.in_channels)
        if self.cfg.keypoints == 'sift' and self._pool is not None:
            job = self._pool.submit(self._timed_sift, gray)
            out = self._net(self.backend.run, net_in, None)
            t_net = time.perf_counter()
            base, sift_ms = job.result()
            refined = self._net(self.backend.refine, base.descriptors) if mc.use_sift else None
            t2 = time.perf_counter()
            self.timings = {'keypoints': sift_ms, 'network': (t_net - t0) * 1e3,
                            'refine': (t2 - max(t_net, t0 + sift_ms * 1e-3)) * 1e3}
        elif self.cfg.keypoints == 'sift':
            base = self.sift(gray)
            t1 = time.perf_counter()
            out = self._net(self.backend.run, net_in, base.descriptors if mc.use_sift else None)
            t2 = time.perf_counter()
            refined = out.get('refined')
            self.timings = {'keypoints': (t1 - t0) * 1e3, 'network': (t2 - t1) * 1e3}
        else:
            out = self._net(self.backend.run, net_in, None, with_scores=True)
            t1 = time.perf_counter()
            h, w = gray.shape
            hs, ws = net_image.shape[:2]
            xy, scores = select_keypoints(out['scores'][0, :hs, :ws], self.cfg.nms_radius,
                                          self.cfg.detection_threshold, self.cfg.border,
                                          self.cfg.max_keypoints)
            xy = to_network_pixels(xy, 1.0 / scale)
            n = len(xy)
            sizes, angles = np.full(n, LEARNED_KEYPOINT_SIZE, np.float32), np.zeros(n, np.float32)
            sift_desc, refined = np.zeros((n, 0), np.float32), None
            if mc.use_sift:
                sift_desc = self.sift.describe_at(gray, xy, sizes, angles)
                refined = self._net(self.backend.refine, sift_desc)
            base = Features(xy, sift_desc, scores, sizes, angles, (w, h))
            t2 = time.perf_counter()
            self.timings = {'keypoints': (t2 - t1) * 1e3, 'network': (t1 - t0) * 1e3}
        cnn = sample_dense_numpy(out['dense'][0], to_network_pixels(base.keypoints, scale))
        desc = cnn if refined is None else np.concatenate([cnn, refined], 1) / np.sqrt(2.0)
        self.timings['sampling'] = (time.perf_counter() - t2) * 1e3
        feats = Features(base.keypoints, desc.astype(np.float32), base.scores, base.scales,
                         base.angles, base.image_size)
        return feats, (base if base.descriptors.shape[1] else None)
