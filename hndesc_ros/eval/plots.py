"""Figures: trajectories (one run, or several extractors on the same frames) and matches
coloured by geometric verification (matplotlib on the Agg backend, OpenCV for RANSAC).

Positions are (N, 3) arrays in the KITTI camera frame (x right, y down, z forward), so the
top view plots x against z. Estimates are expected already aligned onto the ground truth
(:func:`hndesc_ros.eval.trajectory.align`).
"""
from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

import cv2
import numpy as np

from hndesc_ros.features.matching import Verification

LOG = logging.getLogger(__name__)

INLIER_COLOR = '#1a9e3a'
OUTLIER_COLOR = '#e0201b'


# ----------------------------------------------------------------------------- figures
def new_figure(figsize: Tuple[float, float], nrows: int = 1, ncols: int = 1, **kwargs):
    """A figure and its axes on matplotlib's non-interactive Agg backend (no display needed).

    Extra keyword arguments go to ``plt.subplots`` (e.g. ``gridspec_kw``).
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt.subplots(nrows, ncols, figsize=figsize, **kwargs)


def save_figure(fig, path: str | Path, dpi: int = 100, palette: bool = False) -> Path:
    """Lay out, write as PNG (parent folders created, white margins trimmed) and close ``fig``.

    Args:
        palette: write a 256-colour palette PNG (photos: about a third of the size, no
            visible loss for gray images with a few coloured lines).
    """
    import matplotlib.pyplot as plt
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if palette:
        from PIL import Image
        buf = io.BytesIO()
        fig.savefig(buf, format='png', dpi=dpi, bbox_inches='tight', pad_inches=0.05)
        rgb = Image.open(buf).convert('RGB')
        rgb.quantize(256, method=Image.Quantize.FASTOCTREE).save(path, optimize=True)
    else:
        fig.savefig(path, dpi=dpi, bbox_inches='tight', pad_inches=0.05)
    plt.close(fig)
    return Path(path)


# ----------------------------------------------------------------------------- trajectories
def distance_travelled(xyz: np.ndarray) -> np.ndarray:
    """(N,) cumulative path length (m) of (N, 3) positions, 0 at the first."""
    steps = np.linalg.norm(np.diff(xyz, axis=0), axis=1)
    return np.concatenate([[0.0], np.cumsum(steps)])


def _top_view(ax, estimates: Dict[str, np.ndarray], gt: Optional[np.ndarray]) -> None:
    """x-z lines of ``estimates`` (label -> (N, 3)) over the dashed ground truth, with start
    and end markers (of the ground truth, else of the first estimate)."""
    if gt is not None:
        ax.plot(gt[:, 0], gt[:, 2], 'k--', lw=1.5, label='ground truth')
    for label, xyz in estimates.items():
        ax.plot(xyz[:, 0], xyz[:, 2], '-', lw=1.5, label=label)
    ref = gt if gt is not None else next(iter(estimates.values()))
    ax.plot(*ref[0, [0, 2]], 'o', ms=8, mfc='white', mec='k', zorder=5, label='start')
    ax.plot(*ref[-1, [0, 2]], 's', ms=7, mfc='k', mec='k', zorder=5, label='end')
    ax.set_xlabel('x (m, right)')
    ax.set_ylabel('z (m, forward)')
    ax.set_aspect('equal', adjustable='datalim')
    ax.grid(alpha=0.3)
    ax.legend(fontsize='small', loc='best')
    ax.set_title('top view')


def _error_panel(ax, estimates: Dict[str, np.ndarray], gt: np.ndarray,
                 rmse_line: bool) -> None:
    """Position error of each estimate against the ground truth, over distance travelled."""
    dist = distance_travelled(gt)
    moving = dist[-1] > 1e-6
    x = dist if moving else np.arange(len(gt))
    for label, xyz in estimates.items():
        err = np.linalg.norm(xyz - gt, axis=1)
        line, = ax.plot(x, err, '-', lw=1.5, label=label)
        if rmse_line:
            rmse = float(np.sqrt((err ** 2).mean()))
            ax.axhline(rmse, color=line.get_color(), ls=':', lw=1.2,
                       label=f'RMSE {rmse:.3f} m')
    ax.set_xlabel('distance travelled (m)' if moving else 'frame')
    ax.set_ylabel('position error (m)')
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize='small', loc='best')
    ax.set_title('error after alignment')


def plot_trajectory(est: np.ndarray, path: str | Path, gt: Optional[np.ndarray] = None,
                    title: str = '', dpi: int = 100) -> Path:
    """One run: top view with start/end markers and, with ground truth, the error over
    distance travelled (two panels).

    Args:
        est: (N, 3) estimated positions, aligned onto ``gt`` when it is given.
        path: PNG to write.
        gt: (N, 3) ground-truth positions or None (then only the top view is drawn).
        title: figure title (the caller puts mode and ATE there).
        dpi: resolution of the PNG.
    Returns:
        ``path``.
    """
    if gt is None:
        return _trajectory_figure({'estimate': est}, None, None, False, path, title, dpi)
    return _trajectory_figure({'estimate (aligned)': est}, {'estimate': est}, gt, True, path,
                              title, dpi)


def plot_comparison(estimates: Dict[str, np.ndarray], path: str | Path,
                    gt: Optional[np.ndarray] = None, ates: Optional[Dict[str, float]] = None,
                    title: str = '', dpi: int = 100) -> Path:
    """Several runs on the same frames: top view and error over distance, one line each.

    Args:
        estimates: name -> (N, 3) positions (aligned onto ``gt`` when it is given).
        path: PNG to write.
        gt: (N, 3) ground-truth positions shared by every run, or None (top view only).
        ates: name -> ATE RMSE (m), shown in the legend.
        title: figure title.
        dpi: resolution of the PNG.
    Returns:
        ``path``.
    """
    ates = ates or {}
    labelled = {(f'{name} (ATE {ates[name]:.3f} m)' if name in ates else name): xyz
                for name, xyz in estimates.items()}
    return _trajectory_figure(labelled, labelled, gt, False, path, title, dpi)


def _trajectory_figure(top: Dict[str, np.ndarray], errors: Optional[Dict[str, np.ndarray]],
                       gt: Optional[np.ndarray], rmse_line: bool, path: str | Path,
                       title: str, dpi: int) -> Path:
    """The top view of ``top`` and, with ground truth, the error panel of ``errors`` beside
    it; written to ``path``."""
    if gt is None:
        fig, ax = new_figure((6, 5))
        _top_view(ax, top, None)
    else:
        fig, (ax0, ax1) = new_figure((12, 4.8), 1, 2, gridspec_kw={'width_ratios': [1, 1.2]})
        _top_view(ax0, top, gt)
        _error_panel(ax1, errors, gt, rmse_line)
    fig.suptitle(title)
    return save_figure(fig, path, dpi)


# ----------------------------------------------------------------------------- matches
@dataclass
class MatchPlot:
    """What :func:`plot_matches` drew: the file, the counts and the title shown."""

    path: Path
    inliers: int
    outliers: int
    title: str


def _rgb(im: np.ndarray) -> np.ndarray:
    """Gray or BGR uint8 -> RGB uint8."""
    if im.ndim == 2:
        return cv2.cvtColor(im, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(im, cv2.COLOR_BGR2RGB)


def plot_matches(im0: np.ndarray, im1: np.ndarray, kp0: np.ndarray, kp1: np.ndarray,
                 matches: np.ndarray, verification: Verification, path: str | Path,
                 title: str = '', width_in: float = 10.0, dpi: int = 100) -> MatchPlot:
    """Both images (stacked when wide, else side by side) with every match as a line: RANSAC
    inliers green, outliers red, the counts in the title.

    Args:
        im0, im1: (H, W) gray or (H, W, 3) BGR uint8 images.
        kp0, kp1: (N0, 2), (N1, 2) keypoints (x, y) in pixels.
        matches: (K, 2) indices into kp0 and kp1.
        verification: :func:`verify_matches` of these matches (its mask colours the lines).
        path: PNG to write.
        title: first title line (e.g. the image names); the counts follow.
        width_in: figure width (inches); the height follows the images.
        dpi: resolution of the PNG.
    Returns:
        MatchPlot with the inlier/outlier counts and the title as drawn.
    """
    from matplotlib.collections import LineCollection
    matches = np.asarray(matches, np.int64).reshape(-1, 2)
    if len(verification.inliers) != len(matches):
        from hndesc_ros.errors import HndescError
        raise HndescError(f'{len(verification.inliers)} inlier flags for {len(matches)} matches')
    a, b = _rgb(im0), _rgb(im1)
    gap = 10
    stacked = a.shape[1] > 2 * a.shape[0]  # wide images (KITTI) one above the other
    if stacked:
        canvas = np.full((a.shape[0] + gap + b.shape[0], max(a.shape[1], b.shape[1]), 3), 255,
                         np.uint8)
        offset = np.array([0, a.shape[0] + gap])
        canvas[offset[1]:, :b.shape[1]] = b
    else:
        canvas = np.full((max(a.shape[0], b.shape[0]), a.shape[1] + gap + b.shape[1], 3), 255,
                         np.uint8)
        offset = np.array([a.shape[1] + gap, 0])
        canvas[:b.shape[0], offset[0]:] = b
    canvas[:a.shape[0], :a.shape[1]] = a

    n_in, n_out = verification.counts
    fig, ax = new_figure((width_in, width_in * canvas.shape[0] / canvas.shape[1] + 0.5))
    ax.imshow(canvas)
    p0 = kp0[matches[:, 0]]
    p1 = kp1[matches[:, 1]] + offset
    # outliers underneath, thin: the inliers are the result
    for mask, color, width, alpha in ((~verification.inliers, OUTLIER_COLOR, 0.5, 0.6),
                                      (verification.inliers, INLIER_COLOR, 0.9, 0.9)):
        segments = np.stack([p0[mask], p1[mask]], axis=1)
        ax.add_collection(LineCollection(segments, colors=color, linewidths=width, alpha=alpha))
        ends = np.concatenate([p0[mask], p1[mask]])
        ax.plot(ends[:, 0], ends[:, 1], '.', color=color, ms=2.5, alpha=alpha)
    ax.set_xlim(0, canvas.shape[1])
    ax.set_ylim(canvas.shape[0], 0)
    ax.axis('off')
    counts = (f'{n_in} inliers (green), {n_out} outliers (red) of {len(matches)} matches; '
              f'{verification.geometry} RANSAC, {verification.threshold:g} px')
    ax.set_title(f'{title}\n{counts}' if title else counts, fontsize='medium')
    drawn = ax.get_title()
    return MatchPlot(save_figure(fig, path, dpi, palette=True), n_in, n_out, drawn)
