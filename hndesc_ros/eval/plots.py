"""Figures: matches between two images, top-down trajectories (matplotlib / OpenCV only)."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Tuple

import cv2
import numpy as np


def new_figure(figsize: Tuple[float, float]):
    """A figure and its axes on matplotlib's non-interactive Agg backend (no display needed)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt.subplots(figsize=figsize)


def save_figure(fig, path: str | Path) -> Path:
    """Lay out, write as PNG (100 dpi, parent folders created) and close ``fig``."""
    import matplotlib.pyplot as plt
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def draw_matches(im0: np.ndarray, im1: np.ndarray, kp0: np.ndarray, kp1: np.ndarray,
                 matches: np.ndarray, path: str | Path | None = None,
                 max_lines: int = 500) -> np.ndarray:
    """Side-by-side image (BGR uint8) with matches as lines; written to ``path`` if given."""
    def bgr(im):
        return cv2.cvtColor(im, cv2.COLOR_GRAY2BGR) if im.ndim == 2 else im.copy()
    a, b = bgr(im0), bgr(im1)
    h = max(a.shape[0], b.shape[0])
    canvas = np.zeros((h, a.shape[1] + b.shape[1], 3), np.uint8)
    canvas[:a.shape[0], :a.shape[1]] = a
    canvas[:b.shape[0], a.shape[1]:] = b
    rng = np.random.default_rng(0)
    sel = matches if len(matches) <= max_lines else matches[
        rng.choice(len(matches), max_lines, replace=False)]
    for i0, i1 in sel:
        p0 = tuple(int(round(v)) for v in kp0[i0])
        p1 = (int(round(kp1[i1][0])) + a.shape[1], int(round(kp1[i1][1])))
        color = tuple(int(c) for c in rng.integers(64, 256, 3))
        cv2.line(canvas, p0, p1, color, 1, cv2.LINE_AA)
        cv2.circle(canvas, p0, 2, color, -1)
        cv2.circle(canvas, p1, 2, color, -1)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), canvas)
    return canvas


def plot_trajectories(trajs: Dict[str, np.ndarray], path: str | Path,
                      title: str = '') -> Path:
    """Top-down (x, z) plot of (N, 3) camera positions (KITTI camera frame: x right, z fwd)."""
    fig, ax = new_figure((6, 5))
    for name, xyz in trajs.items():
        style = 'k--' if name.lower().startswith('ground') else '-'
        ax.plot(xyz[:, 0], xyz[:, 2], style, label=name)
    ax.set_xlabel('x (m)')
    ax.set_ylabel('z (m)')
    ax.axis('equal')
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title)
    return save_figure(fig, path)
