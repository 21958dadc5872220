"""Bilinear sampling of a stride-8 dense descriptor map at keypoint coordinates.

Convention: cell ``j`` of the 1/8 map summarises pixels ``8j .. 8j+7``, so its centre lies at
pixel ``8j + 3.5``; a keypoint at pixel ``x`` therefore reads map coordinate ``(x - 3.5) / 8``.
Outside the outermost centres the map is clamped (border replicate). The numpy and torch
implementations are identical and tested against each other; torch is imported only by the
torch one, so the ONNX Runtime path runs without it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

STRIDE = 8


def sample_dense_numpy(dense: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    """Sample ``dense`` (D, h, w) at (N, 2) pixel coordinates -> (N, D) L2-normalised."""
    d, h, w = dense.shape
    if len(keypoints) == 0:
        return np.zeros((0, d), np.float32)
    u = np.clip((keypoints[:, 0] - (STRIDE / 2 - 0.5)) / STRIDE, 0, w - 1)
    v = np.clip((keypoints[:, 1] - (STRIDE / 2 - 0.5)) / STRIDE, 0, h - 1)
    u0 = np.minimum(np.floor(u).astype(np.int64), w - 1)
    v0 = np.minimum(np.floor(v).astype(np.int64), h - 1)
    u1, v1 = np.minimum(u0 + 1, w - 1), np.minimum(v0 + 1, h - 1)
    au, av = (u - u0)[:, None], (v - v0)[:, None]
    flat = dense.reshape(d, -1).T  # (h*w, D)
    out = ((1 - au) * (1 - av) * flat[v0 * w + u0] + au * (1 - av) * flat[v0 * w + u1]
           + (1 - au) * av * flat[v1 * w + u0] + au * av * flat[v1 * w + u1])
    out /= np.linalg.norm(out, axis=1, keepdims=True) + 1e-12
    return out.astype(np.float32)


def sample_dense_torch(dense: torch.Tensor, keypoints: torch.Tensor) -> torch.Tensor:
    """Sample ``dense`` (B, D, h, w) at (B, N, 2) pixel coordinates -> (B, N, D) normalised."""
    import torch
    import torch.nn.functional as F
    b, d, h, w = dense.shape
    # grid_sample(align_corners=True) maps -1/+1 to the first/last cell centre.
    u = ((keypoints[..., 0] - (STRIDE / 2 - 0.5)) / STRIDE).clamp(0, w - 1)
    v = ((keypoints[..., 1] - (STRIDE / 2 - 0.5)) / STRIDE).clamp(0, h - 1)
    grid = torch.stack([2 * u / max(w - 1, 1) - 1, 2 * v / max(h - 1, 1) - 1], dim=-1)
    out = F.grid_sample(dense, grid[:, None].to(dense.dtype), mode='bilinear',
                        align_corners=True, padding_mode='border')  # (B, D, 1, N)
    return F.normalize(out[:, :, 0].transpose(1, 2), dim=-1)
