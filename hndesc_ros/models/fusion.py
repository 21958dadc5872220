"""The descriptor networks chosen by name: ``residual``, ``cnn`` and ``residual-small``.

``residual`` (Shrestha et al.): descriptor = L2norm([ h(I)(kp) ; f(SIFT(kp)) ]), 128 + 128 = 256-D.
``cnn`` (ablation): descriptor = h(I)(kp) with a 256-D descriptor head, no SIFT input.
``residual-small``: ``residual`` with half the channels everywhere (64 + 64 = 128-D).
"""
from __future__ import annotations

from typing import Dict, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from hndesc_ros.models.refine import RefineMLP
from hndesc_ros.models.superpoint import TrimmedSuperPoint
from hndesc_ros.models.variants import ModelConfig, variant_config


class HNDescNet(nn.Module):
    """``h`` (+ ``f`` for the residual variants) with one forward contract.

    forward(image (B, C, H, W) in [0, 1], H, W multiples of 8, sift (N, 128) or None) returns
    ``dense`` (B, cnn_dim, H/8, W/8) unit vectors, ``refined`` (N, refine_dim) unit vectors
    (residual variants) and ``scores`` (B, H, W) keypoint probabilities (if the detector exists).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.h = TrimmedSuperPoint(cfg.in_channels, cfg.channels, cfg.head_channels, cfg.cnn_dim,
                                   cfg.detector, cfg.batchnorm)
        self.f: Optional[RefineMLP] = (
            RefineMLP(128, cfg.refine_hidden, cfg.refine_dim) if cfg.use_sift else None)

    def forward(self, image: torch.Tensor, sift: Optional[torch.Tensor] = None,
                with_scores: bool = True) -> Dict[str, torch.Tensor]:
        out = self.h(image, with_scores=with_scores)
        if self.f is not None and sift is not None:
            out['refined'] = self.f(sift)
        return out


def fuse(cnn: torch.Tensor, refined: Optional[torch.Tensor]) -> torch.Tensor:
    """Concatenate unit CNN (..., Dc) and refined (..., Dr) parts -> (..., Dc+Dr) unit rows."""
    if refined is None:
        return F.normalize(cnn, dim=-1)
    return F.normalize(torch.cat([cnn, refined], dim=-1), dim=-1)


def build_model(name_or_cfg) -> HNDescNet:
    """Build an untrained network from a variant name or a ModelConfig."""
    cfg = name_or_cfg if isinstance(name_or_cfg, ModelConfig) else variant_config(name_or_cfg)
    return HNDescNet(cfg)
