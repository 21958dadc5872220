"""Trimmed SuperPoint network ``h``: VGG encoder, descriptor head and optional detector head.

Layer names follow the original SuperPoint (``conv1a`` ... ``convDb``, ``convPa``/``convPb``)
so a user's SuperPoint checkpoint loads with a plain key mapping (see checkpoint.py).
"""
from __future__ import annotations

from typing import Dict, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


def _conv(cin: int, cout: int, k: int = 3, bn: bool = False) -> nn.Module:
    conv = nn.Conv2d(cin, cout, kernel_size=k, stride=1, padding=k // 2)
    return nn.Sequential(conv, nn.BatchNorm2d(cout)) if bn else conv


class TrimmedSuperPoint(nn.Module):
    """VGG encoder (three 2x2 poolings, stride 8) with descriptor and detector heads.

    Args:
        in_channels: 1 (gray) or 3 (RGB).
        channels: encoder widths (c1, c2, c3, c4); SuperPoint uses (64, 64, 128, 128).
        head_channels: hidden width of both heads (256 in SuperPoint).
        descriptor_dim: output channels of the descriptor head (d_s).
        detector: build the 65-channel detector head (cell logits + dustbin).
        batchnorm: BatchNorm after every hidden conv (stabilises training from scratch; folded
            into the convolutions by the ONNX export). The original SuperPoint has none, so its
            weights load with the BN layers left at identity.
    """

    def __init__(self, in_channels: int = 1, channels: Sequence[int] = (64, 64, 128, 128),
                 head_channels: int = 256, descriptor_dim: int = 128, detector: bool = True,
                 batchnorm: bool = True):
        super().__init__()
        c1, c2, c3, c4 = channels
        self.in_channels = in_channels
        bn = batchnorm
        self.conv1a, self.conv1b = _conv(in_channels, c1, bn=bn), _conv(c1, c1, bn=bn)
        self.conv2a, self.conv2b = _conv(c1, c2, bn=bn), _conv(c2, c2, bn=bn)
        self.conv3a, self.conv3b = _conv(c2, c3, bn=bn), _conv(c3, c3, bn=bn)
        self.conv4a, self.conv4b = _conv(c3, c4, bn=bn), _conv(c4, c4, bn=bn)
        self.convDa = _conv(c4, head_channels, bn=bn)
        self.convDb = _conv(head_channels, descriptor_dim, 1)
        self.has_detector = detector
        if detector:
            self.convPa, self.convPb = _conv(c4, head_channels, bn=bn), _conv(head_channels, 65, 1)

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [0, 1], H and W multiples of 8 -> (B, c4, H/8, W/8)."""
        x = image
        for a, b, pool in ((self.conv1a, self.conv1b, True), (self.conv2a, self.conv2b, True),
                           (self.conv3a, self.conv3b, True), (self.conv4a, self.conv4b, False)):
            x = F.relu(b(F.relu(a(x))))
            if pool:
                x = F.max_pool2d(x, 2, 2)
        return x

    def describe(self, feat: torch.Tensor) -> torch.Tensor:
        """(B, c4, h, w) -> (B, D, h, w) unit-length dense descriptors."""
        return F.normalize(self.convDb(F.relu(self.convDa(feat))), dim=1)

    def detect(self, feat: torch.Tensor) -> torch.Tensor:
        """(B, c4, h, w) -> (B, 8h, 8w) keypoint probability (softmax over 65, dustbin dropped)."""
        logits = self.convPb(F.relu(self.convPa(feat)))
        prob = torch.softmax(logits, dim=1)[:, :64]
        return F.pixel_shuffle(prob, 8)[:, 0]

    def detector_logits(self, feat: torch.Tensor) -> torch.Tensor:
        """(B, c4, h, w) -> (B, 65, h, w) raw cell logits (training)."""
        return self.convPb(F.relu(self.convPa(feat)))

    def forward(self, image: torch.Tensor, with_scores: bool = True) -> Dict[str, torch.Tensor]:
        feat = self.encode(image)
        out = {'dense': self.describe(feat)}
        if self.has_detector and with_scores:
            out['scores'] = self.detect(feat)
        return out
