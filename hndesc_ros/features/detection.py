"""Keypoint selection from a dense score map (outside the network: static ONNX/TRT graphs)."""
from __future__ import annotations

import cv2
import numpy as np


def select_keypoints(scores: np.ndarray, nms_radius: int = 4, threshold: float = 0.005,
                     border: int = 8, max_keypoints: int = 2000):
    """(H, W) probabilities -> ((N, 2) float32 x y, (N,) float32 scores), strongest first.

    A pixel survives if it is the maximum of its (2r+1)^2 neighbourhood, above ``threshold`` and
    at least ``border`` px from the image edge.
    """
    h, w = scores.shape
    k = 2 * nms_radius + 1
    peak = cv2.dilate(scores, np.ones((k, k), np.uint8))
    keep = (scores >= peak) & (scores > threshold)
    if border > 0:
        keep[:border], keep[-border:], keep[:, :border], keep[:, -border:] = False, False, False, \
            False
    ys, xs = np.nonzero(keep)
    s = scores[ys, xs]
    order = np.argsort(-s, kind='stable')[:max_keypoints]
    return np.stack([xs[order], ys[order]], 1).astype(np.float32), s[order].astype(np.float32)
