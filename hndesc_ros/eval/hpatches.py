"""HPatches-style evaluation: image 1 against 2..6 with ground-truth homographies.

Protocol: keypoints detected independently in each image, mutual nearest neighbour on all
keypoints (and optionally a fixed budget), mean matching accuracy (MMA) at 1..10 px, and
homography accuracy at 1/3/5 px (RANSAC, mean corner error).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Dict, List, Sequence

import cv2
import numpy as np

from hndesc_ros.errors import HndescError
from hndesc_ros.features.image import read_image
from hndesc_ros.features.matching import match_numpy
from hndesc_ros.types import Features

LOG = logging.getLogger(__name__)
THRESHOLDS = tuple(range(1, 11))
H_THRESHOLDS = (1, 3, 5)


def load_scene(scene: str | Path):
    """(images [gray uint8] x6, homographies H_1_k for k = 2..6 as (3, 3) float64)."""
    scene = Path(scene)
    if not scene.is_dir():
        raise HndescError(f'HPatches scene not found: {scene}')
    images = [read_image(scene / f'{i}.ppm', gray=True) for i in range(1, 7)]
    hs = [np.loadtxt(scene / f'H_1_{i}') for i in range(2, 7)]
    return images, hs


def warp(H: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """(N, 2) points through a 3x3 homography."""
    p = np.c_[xy, np.ones(len(xy))] @ H.T
    return p[:, :2] / p[:, 2:3]


def evaluate_pair(f0: Features, f1: Features, H: np.ndarray, shape0,
                  thresholds: Sequence[int] = THRESHOLDS) -> Dict:
    """Metrics for one pair: MMA per threshold, homography corner error, counts."""
    m = match_numpy(f0.descriptors, f1.descriptors)
    res = {'keypoints': (len(f0) + len(f1)) / 2, 'matches': len(m)}
    if len(m) == 0:
        res['mma'] = [0.0] * len(thresholds)
        res['h_error'] = np.inf
        return res
    p0, p1 = f0.keypoints[m.indices[:, 0]], f1.keypoints[m.indices[:, 1]]
    err = np.linalg.norm(warp(H, p0) - p1, axis=1)
    res['mma'] = [float((err <= t).mean()) for t in thresholds]
    res['h_error'] = np.inf
    if len(m) >= 4:
        Hest, _ = cv2.findHomography(p0, p1, cv2.RANSAC, 3.0, maxIters=5000, confidence=0.9999)
        if Hest is not None:
            h, w = shape0[:2]
            corners = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], float)
            res['h_error'] = float(np.linalg.norm(warp(Hest, corners) - warp(H, corners),
                                                  axis=1).mean())
    return res


def repeatability(f0: Features, f1: Features, H: np.ndarray, shape0, shape1,
                  threshold: float = 3.0) -> float:
    """Symmetric repeatability: fraction of keypoints, in the area both images see, that have
    a detection in the other image within ``threshold`` px after warping by the true H."""
    def one_way(a, b, Hab, shape_b, shape_a, Hba):
        if len(a) == 0:
            return 0.0, 0
        w = warp(Hab, a)
        h, wd = shape_b[:2]
        inside = (w[:, 0] >= 0) & (w[:, 0] < wd) & (w[:, 1] >= 0) & (w[:, 1] < h)
        if not inside.any() or len(b) == 0:
            return 0.0, int(inside.sum())
        d = np.linalg.norm(w[inside][:, None] - b[None], axis=2).min(1)
        return float((d <= threshold).sum()), int(inside.sum())
    Hinv = np.linalg.inv(H)
    c01, n01 = one_way(f0.keypoints, f1.keypoints, H, shape1, shape0, Hinv)
    c10, n10 = one_way(f1.keypoints, f0.keypoints, Hinv, shape0, shape1, H)
    return (c01 + c10) / max(n01 + n10, 1)


def evaluate_scene(scene: str | Path, extract: Callable[[np.ndarray], Features],
                   budget: int = 0) -> Dict:
    """Evaluate one extractor (image -> Features) on one scene.

    Args:
        budget: if > 0, keep only the strongest ``budget`` keypoints of each image.
    Returns:
        dict with ``mma`` (list per threshold, mean over pairs), ``mma@3``, ``h_acc`` (dict
        threshold -> fraction of pairs), ``keypoints``, ``matches`` and per-pair results.
    """
    images, hs = load_scene(scene)
    feats = [extract(im) for im in images]
    if budget:
        feats = [f.subset(np.argsort(-f.scores, kind='stable')[:budget]) for f in feats]
    pairs = [evaluate_pair(feats[0], feats[i], hs[i - 1], images[0].shape)
             for i in range(1, 6)]
    for i, p in enumerate(pairs, start=1):
        p['repeatability'] = repeatability(feats[0], feats[i], hs[i - 1], images[0].shape,
                                           images[i].shape)
    return summarise(pairs)


def summarise(pairs: List[Dict]) -> Dict:
    """Average per-pair results."""
    mma = np.mean([p['mma'] for p in pairs], axis=0)
    return {
        'mma': [round(float(v), 4) for v in mma],
        'mma@3': round(float(mma[2]), 4),
        'h_acc': {str(t): float(np.mean([p['h_error'] <= t for p in pairs]))
                  for t in H_THRESHOLDS},
        'keypoints': float(np.mean([p['keypoints'] for p in pairs])),
        'repeatability': float(np.mean([p.get('repeatability', np.nan) for p in pairs])),
        'matches': float(np.mean([p['matches'] for p in pairs])),
        'pairs': pairs,
    }


def find_scenes(root: str | Path) -> List[Path]:
    """A scene folder itself, or every scene folder (holding 1.ppm and H_1_2) below root."""
    root = Path(root)
    if (root / '1.ppm').exists():
        return [root]
    scenes = sorted(p.parent for p in root.rglob('H_1_2'))
    if not scenes:
        raise HndescError(f'no HPatches scenes (folders with 1.ppm and H_1_2) under {root}')
    return scenes


def evaluate(root: str | Path, extractors: Dict[str, Callable[[np.ndarray], Features]],
             budget: int = 0, progress: bool = False) -> Dict[str, Dict]:
    """Evaluate named extractors on every scene under ``root``; per-method scene means.

    Args:
        root: one scene folder or a folder holding scenes (see :func:`find_scenes`).
        extractors: name -> function image -> Features.
        budget: if > 0, keep only the strongest ``budget`` keypoints of each image.
        progress: show a tqdm bar on stderr over (method, scene) steps.
    """
    from hndesc_ros.progress import progress_bar
    scenes = find_scenes(root)
    bar = progress_bar(len(extractors) * len(scenes),
                       'HPatches' + (f' ({budget} keypoints)' if budget else ''), 'scene',
                       enabled=progress)
    out = {}
    try:
        for name, fn in extractors.items():
            per_scene = []
            for scene in scenes:
                bar.set_postfix_str(f'{name} on {scene.name}')
                per_scene.append(evaluate_scene(scene, fn, budget))
                bar.update()
            mean = summarise([p for s in per_scene for p in s['pairs']])
            mean.pop('pairs')
            out[name] = mean
    finally:
        bar.close()
    return out


def format_table(results: Dict[str, Dict]) -> str:
    """A text table: method, MMA@1/3/5/10, homography accuracy @1/3/5, keypoints, matches."""
    lines = [f'{"method":<16}{"MMA@1":>7}{"MMA@3":>7}{"MMA@5":>7}{"MMA@10":>8}'
             f'{"H@1":>6}{"H@3":>6}{"H@5":>6}{"kpts":>7}{"matches":>9}']
    for name, r in results.items():
        m = r['mma']
        h = r['h_acc']
        lines.append(f'{name:<16}{m[0]:>7.3f}{m[2]:>7.3f}{m[4]:>7.3f}{m[9]:>8.3f}'
                     f'{h["1"]:>6.2f}{h["3"]:>6.2f}{h["5"]:>6.2f}{r["keypoints"]:>7.0f}'
                     f'{r["matches"]:>9.0f}')
    return '\n'.join(lines)


def plot_mma(results: Dict[str, Dict], path: str | Path) -> Path:
    """MMA-vs-threshold plot (PNG)."""
    from hndesc_ros.eval.plots import new_figure, save_figure
    fig, ax = new_figure((5, 4))
    for name, r in results.items():
        ax.plot(THRESHOLDS, r['mma'], marker='o', label=name)
    ax.set_xlabel('threshold (px)')
    ax.set_ylabel('MMA')
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)
