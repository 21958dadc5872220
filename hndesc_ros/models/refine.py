"""Refine MLP ``f`` on the handcrafted (SIFT) descriptor: 128 -> 256 -> 256 -> 128, ReLU."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


class RefineMLP(nn.Module):
    """Maps (N, 128) unit SIFT descriptors to (N, out_dim) unit descriptors.

    Args:
        in_dim: handcrafted descriptor size (128 for SIFT).
        hidden: hidden widths (256, 256 in the residual paper).
        out_dim: output size.
    """

    def __init__(self, in_dim: int = 128, hidden: Sequence[int] = (256, 256), out_dim: int = 128):
        super().__init__()
        dims = [in_dim, *hidden, out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, desc: torch.Tensor) -> torch.Tensor:
        """(N, in_dim) -> (N, out_dim), L2-normalised rows."""
        x = desc
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return F.normalize(x, dim=-1)
