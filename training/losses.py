"""Losses: margin hinge with hardest negatives mined over the whole batch (HNDesc), detector CE."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def batch_hard_hinge(d0: torch.Tensor, d1: torch.Tensor, kp1: torch.Tensor, img_id: torch.Tensor,
                     margin: float = 1.0, exclusion_px: float = 8.0):
    """Triplet hinge loss with the hardest in-batch negative, both directions.

    Args:
        d0, d1: (M, D) unit descriptors of M positive pairs gathered from the whole batch.
        kp1: (M, 2) positions of the positives in their target image (pixels).
        img_id: (M,) which batch item each pair comes from.
        margin: hinge margin on Euclidean distances.
        exclusion_px: negatives of the same image within this radius of the positive are
            ignored (they are near-duplicates of the positive, not negatives).
    Returns:
        (loss scalar, accuracy: fraction of rows whose nearest neighbour is the positive).
    """
    dist = torch.cdist(d0[None], d1[None])[0]  # (M, M)
    pos = dist.diagonal()
    same = img_id[:, None] == img_id[None]
    near = torch.cdist(kp1[None], kp1[None])[0] < exclusion_px
    forbid = (same & near) | torch.eye(len(d0), dtype=torch.bool, device=d0.device)
    neg = dist.masked_fill(forbid, float('inf'))
    hard01 = neg.min(dim=1).values
    hard10 = neg.min(dim=0).values
    loss = 0.5 * (F.relu(margin + pos - hard01) + F.relu(margin + pos - hard10)).mean()
    acc = (dist.argmin(dim=1) == torch.arange(len(d0), device=d0.device)).float().mean()
    return loss, acc


def detector_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cell-wise 65-way cross-entropy. logits (B, 65, h, w), labels (B, h, w) in 0..64."""
    return F.cross_entropy(logits, labels)
