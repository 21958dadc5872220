"""The GPU front end: learned keypoints + CNN descriptors + stereo matching, all on the device.

Everything after the image upload has static shapes (top-k instead of a dynamic nonzero, masked
mutual NN), so the whole stereo frame can be captured once in a CUDA graph and replayed: no host
round trip between network, detection, sampling and matching. fp16 autocast and channels_last
are used on CUDA. On the CPU the same code runs eagerly (used by the tests).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from hndesc_ros.config import Config
from hndesc_ros.errors import ConfigError, ImageError
from hndesc_ros.features.extractor import HANDCRAFTED, resolve_weights
from hndesc_ros.features.matching import stereo_mask
from hndesc_ros.models.checkpoint import load_checkpoint
from hndesc_ros.models.sampling import sample_dense_torch
from hndesc_ros.types import Features


def topk_keypoints(scores: torch.Tensor, k: int, nms_radius: int = 4, threshold: float = 0.005,
                   border: int = 8) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, H, W) probabilities -> keypoints (B, k, 2) x y, scores (B, k), valid (B, k).

    Static-shape twin of :func:`hndesc_ros.features.detection.select_keypoints`: NMS by max
    pooling, border removal, then a fixed top-k; ``valid`` marks entries above ``threshold``.
    """
    b, h, w = scores.shape
    peak = F.max_pool2d(scores[:, None], 2 * nms_radius + 1, 1, nms_radius)[:, 0]
    s = torch.where(scores >= peak, scores, torch.zeros_like(scores))
    if border:
        s[:, :border], s[:, -border:], s[:, :, :border], s[:, :, -border:] = 0, 0, 0, 0
    val, idx = s.reshape(b, -1).topk(k, dim=1)
    xy = torch.stack([idx % w, idx // w], -1).to(scores.dtype)
    return xy, val, val > threshold


def masked_mutual_nn(d0: torch.Tensor, d1: torch.Tensor, mask: torch.Tensor,
                     max_distance: float = 1.2) -> Tuple[torch.Tensor, torch.Tensor]:
    """Mutual NN under an allowed-pairs mask with static shapes.

    Args:
        d0: (N, D), d1: (M, D) unit descriptors; mask: (N, M) bool allowed pairs.
    Returns:
        match (N,) int64 index into d1 or -1, distance (N,).
    """
    sim = d0 @ d1.t()
    sim = sim.masked_fill(~mask, -4.0)
    best, nn01 = sim.max(dim=1)
    nn10 = sim.argmax(dim=0)
    dist = torch.sqrt(torch.clamp(2 - 2 * best, min=0))
    ok = (nn10[nn01] == torch.arange(len(d0), device=d0.device)) & (best > -2) & \
        (dist <= max_distance)
    return torch.where(ok, nn01, torch.full_like(nn01, -1)), dist


class GpuStereoFrontend:
    """Stereo frame -> (keypoints, descriptors, stereo matches, temporal matches) on the GPU.

    Keypoints are always the learned ones (``features.keypoints`` is not read): only the CNN
    branch ``h`` of the model runs, as there is no SIFT input.

    Args:
        cfg: ``features`` gives the model (``weights``, else the shipped ``extractor``: one with
            a detector head, e.g. ``cnn`` or ``residual``), ``device`` ('cuda' or 'cpu'),
            ``fp16`` (autocast, CUDA only), ``max_keypoints`` (the static top-k),
            ``nms_radius``, ``detection_threshold`` and ``border``; ``matching`` the stereo row
            and disparity limits and the ``max_distance`` of the mutual NN.
        height, width: image size (fixed: the CUDA graph is captured for it); None: taken from
            the first frame (buffers and graph are made then).
        graph: capture the whole frame in a CUDA graph (CUDA only).
    Raises:
        ConfigError: the model has no detector head.
        WeightsError: the weights cannot be loaded (at construction, not at the first frame).
    """

    static_shapes = True  # what StereoFrontend looks for

    def __init__(self, cfg: Config, height: Optional[int] = None, width: Optional[int] = None,
                 graph: bool = True) -> None:
        self.features, self.matching = cfg.features, cfg.matching
        features = cfg.features
        self.device = torch.device(features.device)
        if features.extractor in HANDCRAFTED and not features.weights:
            raise ConfigError(f'the GPU front end runs a network with a detector head (e.g. '
                              f'cnn, residual), not features.extractor={features.extractor!r}')
        self.model, _ = load_checkpoint(resolve_weights(replace(features, backend='torch')))
        if not self.model.cfg.detector:
            raise ConfigError(f'the GPU front end needs learned keypoints: model '
                              f'{features.weights or features.extractor!r} has no detector head')
        self.model = self.model.to(self.device).eval()
        cuda = self.device.type == 'cuda'
        self.fp16 = features.fp16 and cuda
        if cuda:
            self.model = self.model.to(memory_format=torch.channels_last)
            torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick kernels
        self.use_graph = graph and cuda
        self.graph = None
        self.static_out = None
        self.h = self.w = None
        if height is not None and width is not None:
            self._setup(height, width)

    def _setup(self, height: int, width: int) -> None:
        """Static buffers (and the CUDA graph) for one image size."""
        cuda = self.device.type == 'cuda'
        features = self.features
        self.h, self.w = height, width
        self.hp, self.wp = (height + 7) // 8 * 8, (width + 7) // 8 * 8
        self.k = features.max_keypoints
        self.static_in = torch.zeros(2, 1, self.hp, self.wp, device=self.device)
        self.host = torch.zeros(2, height, width, dtype=torch.uint8,
                                pin_memory=cuda)  # pinned host staging buffer
        dim = self.model.cfg.cnn_dim
        # previous left frame, kept on the device so temporal matching stays inside the graph
        self.prev_desc = torch.zeros(self.k, dim, device=self.device)
        self.prev_valid = torch.zeros(self.k, dtype=torch.bool, device=self.device)
        if self.use_graph:
            self._capture()

    @torch.inference_mode()
    def _forward(self) -> Dict[str, torch.Tensor]:
        x = self.static_in
        if self.device.type == 'cuda':
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.fp16):
            feat = self.model.h.encode(x)
            dense = self.model.h.describe(feat)
            scores = self.model.h.detect(feat)
        scores = scores[:, :self.h, :self.w].float()
        f, m = self.features, self.matching
        xy, sc, valid = topk_keypoints(scores, self.k, f.nms_radius, f.detection_threshold,
                                       f.border)
        desc = sample_dense_torch(dense.float(), xy)                     # (2, k, D)
        mask = stereo_mask(xy[0], xy[1], m.stereo_max_row_diff, m.stereo_min_disparity,
                           m.stereo_max_disparity) & valid[0][:, None] & valid[1][None]
        stereo, _ = masked_mutual_nn(desc[0], desc[1], mask, m.max_distance)
        tmask = valid[0][:, None] & self.prev_valid[None]
        temporal, _ = masked_mutual_nn(desc[0], self.prev_desc, tmask, m.max_distance)
        self.prev_desc.copy_(desc[0])
        self.prev_valid.copy_(valid[0])
        return {'xy': xy, 'scores': sc, 'valid': valid, 'desc': desc, 'stereo': stereo,
                'temporal': temporal}

    def _capture(self) -> None:
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(3):  # warm up cudnn autotuning outside the graph
                self._forward()
        torch.cuda.current_stream().wait_stream(s)
        self.prev_valid.zero_()
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.static_out = self._forward()

    @torch.inference_mode()
    def process(self, left: np.ndarray, right: np.ndarray) -> Dict[str, torch.Tensor]:
        """Two (H, W) uint8 numpy images -> dict of device tensors: ``xy`` (2, k, 2), ``scores``
        and ``valid`` (2, k), ``desc`` (2, k, D), ``stereo`` (k,) index of each left keypoint's
        right match or -1, ``temporal`` (k,) index into the previous left frame's keypoints
        or -1."""
        if self.h is None:
            self._setup(*left.shape[:2])
        if left.shape[:2] != (self.h, self.w) or right.shape[:2] != (self.h, self.w):
            raise ImageError(f'the static front end was set up for {self.w}x{self.h} images, '
                             f'got {left.shape[1]}x{left.shape[0]}', 'bad_image_size')
        self.host[0].copy_(torch.from_numpy(np.ascontiguousarray(left)))
        self.host[1].copy_(torch.from_numpy(np.ascontiguousarray(right)))
        dev = self.host.to(self.device, non_blocking=True).float().div_(255.0)
        self.static_in.zero_()
        self.static_in[:, 0, :self.h, :self.w] = dev
        if self.hp > self.h:  # replicate padding, as on the CPU path
            self.static_in[:, 0, self.h:, :self.w] = dev[:, -1:, :]
        if self.wp > self.w:
            self.static_in[:, 0, :, self.w:] = self.static_in[:, 0, :, self.w - 1:self.w]
        if self.graph is not None:
            self.graph.replay()
            out = {k: v.clone() for k, v in self.static_out.items()}
        else:
            out = self._forward()
        return out

    def stereo_features(self, left: np.ndarray, right: np.ndarray
                        ) -> Tuple[Features, np.ndarray]:
        """The CPU front end's contract (:meth:`StereoFrontend.stereo_features`): the left
        image's Features (valid keypoints, strongest first, CNN descriptors) and the right-image
        u of each keypoint (NaN: no stereo match)."""
        out = self.process(left, right)
        valid = out['valid'][0]
        xy_right = out['xy'][1, :, 0]
        stereo = out['stereo'][valid]
        u_right = torch.where(stereo >= 0, xy_right[stereo.clamp(min=0)],
                              torch.full_like(xy_right[:1], float('nan')).expand(len(stereo)))
        f = Features(out['xy'][0][valid].float().cpu().numpy(),
                     out['desc'][0][valid].float().cpu().numpy(),
                     out['scores'][0][valid].float().cpu().numpy(),
                     image_size=(self.w, self.h))
        return f, u_right.float().cpu().numpy()

    def close(self) -> None:
        """Nothing to stop (same interface as the Extractor)."""
