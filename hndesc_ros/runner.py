"""Run a VO pipeline over a sequence and evaluate it (library function behind ``hndesc-vo kitti``).

A *sequence* is anything with ``calib`` (StereoCalib), ``__len__``, ``frame(k)`` ->
StereoFrame, ``times`` (N,) and ``gt_relative()`` -> (N, 4, 4) or None (e.g. KittiSequence,
SyntheticSequence).
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import numpy as np

from hndesc_ros.config import Config, to_dict
from hndesc_ros.datasets import poses as poses_io
from hndesc_ros.errors import HndescError
from hndesc_ros.eval import plots
from hndesc_ros.eval import trajectory as tj
from hndesc_ros.progress import progress_bar
from hndesc_ros.types import FrameResult
from hndesc_ros.vo.pipeline import StereoVO, summarise_timings
from hndesc_ros.vo.tracker import observation_stats

LOG = logging.getLogger(__name__)
ALIGN_NAMES = {'se3': 'SE(3)', 'sim3': 'Sim(3)', 'none': 'not'}


def run_sequence(seq, cfg: Config, mono: bool = False, gt_scale: bool = False,
                 progress: bool = False, extractor=None,
                 on_result: Optional[Callable[[FrameResult], None]] = None) -> Dict:
    """Process every frame; returns {'poses', 'stamps', 'results', 'metrics'}.

    ``on_result`` is called with each FrameResult as soon as it is ready (benches time it)."""
    gt = seq.gt_relative()
    scale_fn = None
    if mono:
        cfg = replace(cfg, vo=replace(cfg.vo, mono=True))
        if gt_scale:
            if gt is None:
                from hndesc_ros.errors import HndescError
                raise HndescError('--gt-scale needs ground-truth poses')
            scale_fn = tj.step_lengths(gt).__getitem__
    vo = StereoVO(seq.calib, cfg, extractor, scale_fn)
    bar = progress_bar(len(seq), f'VO {cfg.features.extractor}', enabled=progress)
    results, seen, kept = [], [], []
    keyframes = lost = 0
    t0 = time.perf_counter()
    try:
        frames = (seq.frame(k) for k in range(len(seq)))  # read in the extraction thread
        for k, result in enumerate(vo.run(frames)):
            results.append(result)
            if on_result is not None:
                on_result(result)
            seen.append((k, vo.last_observations.track_ids))
            # the back end's outliers do not count as map observations
            kept.append((k, getattr(vo.odometry, 'kept_ids', seen[-1][1])))
            keyframes += result.keyframe
            lost += k > 0 and not result.tracked
            bar.set_postfix(keyframes=keyframes, lost=lost, refresh=False)
            bar.update()
        vo.finish()  # the background mapper's last keyframes count in the wall time
        wall = time.perf_counter() - t0
    finally:
        bar.close()
        vo.close()
    poses = np.array([r.T_world_cam for r in results])
    metrics = {'frames': len(results), 'frames_tracked': int(sum(r.tracked for r in results)),
               'tracking_lost': int(sum(not r.tracked for r in results[1:])),
               'keyframes': int(sum(r.keyframe for r in results)),
               'smoother_resets': int(vo.odometry.resets),
               'smoother_rebuilds': int(vo.odometry.rebuilds),
               'stationary_frames': int(vo.odometry.stationary),
               'pairs_stretched': int(vo.frontend.stretched),
               'pairs_blurred': int(vo.frontend.blurred),
               'disparity_offset_px': (None if mono else
                                       round(float(vo.odometry.offset.value), 4)),
               'wall_fps': len(results) / wall, 'mode': 'mono' if mono else 'stereo',
               'gt_scale': bool(mono and gt_scale),
               'extractor': cfg.features.extractor, 'keypoints': cfg.features.keypoints,
               'backend': cfg.features.backend}
    timing = summarise_timings(results)
    metrics.update(fps_frontend=timing.pop('fps_frontend'), fps_backend=timing.pop('fps_backend'))
    metrics['ms_per_stage'] = timing
    metrics.update(observation_stats(seen))
    # map points: landmarks seen in >= 2 keyframes, and their mean keyframe observations
    # (those the back end kept)
    in_keyframes = observation_stats([s for s, r in zip(kept, results) if r.keyframe], 2)
    metrics.update(map_points=in_keyframes['landmarks'],
                   map_point_observations=in_keyframes['obs_per_landmark'])
    if gt is not None:
        align = 'sim3' if (mono and not gt_scale) else 'se3'
        metrics.update(tj.evaluate(poses, gt, align))
    return {'poses': poses, 'stamps': np.asarray(seq.times), 'results': results,
            'metrics': metrics, 'gt': gt}


def write_outputs(run: Dict, out: str | Path, cfg: Config, title: str = '') -> Dict[str, Path]:
    """Trajectory (KITTI + TUM), metrics JSON, trajectory plot (top view, and the error over
    distance travelled with ground truth). Returns the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {'kitti': poses_io.write_kitti(out / 'trajectory_kitti.txt', run['poses']),
             'tum': poses_io.write_tum(out / 'trajectory_tum.txt', run['stamps'], run['poses'])}
    if run['gt'] is not None:
        paths['gt_kitti'] = poses_io.write_kitti(out / 'groundtruth_kitti.txt', run['gt'])
        paths['gt_tum'] = poses_io.write_tum(out / 'groundtruth_tum.txt', run['stamps'], run['gt'])
    metrics = dict(run['metrics'], config=to_dict(cfg))
    paths['metrics'] = out / 'metrics.json'
    paths['metrics'].write_text(json.dumps(metrics, indent=1))
    est, gt = aligned_positions(run)
    paths['plot'] = plots.plot_trajectory(est, out / 'trajectory.png', gt,
                                          plot_title(run['metrics'], title))
    return paths


def aligned_positions(run: Dict) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """(N, 3) estimated positions aligned onto the ground truth as the metrics were (SE(3), or
    Sim(3) for mono without GT scale), and (N, 3) ground truth; raw estimate and None
    without ground truth."""
    if run['gt'] is None:
        return run['poses'][:, :3, 3], None
    est = tj.align(run['poses'], run['gt'], run['metrics'].get('align', 'se3'))
    return est[:, :3, 3], run['gt'][:, :3, 3]


def describe_mode(m: Dict) -> str:
    """'stereo', 'mono, GT scale' or 'mono, no GT scale' from run_sequence's metrics."""
    if m.get('mode') != 'mono':
        return 'stereo'
    return 'mono, GT scale' if m.get('gt_scale') else 'mono, no GT scale'


def plot_title(m: Dict, title: str = '') -> str:
    """Figure title: the caller's title, mode, and ATE when there was ground truth."""
    head = f'{title}, {describe_mode(m)}' if title else describe_mode(m)
    if 'ate_rmse_m' not in m:
        return f'{head}, no ground truth'
    return (f'{head}\nATE RMSE {m["ate_rmse_m"]:.3f} m over {m["path_length_m"]:.1f} m '
            f'({m["ate_pct_of_path"]:.2f} %, {ALIGN_NAMES[m["align"]]} aligned)')


def write_comparison(runs: Dict[str, Dict], path: str | Path, title: str = '') -> Path:
    """One figure comparing runs on the same frames (name -> run_sequence result): the shared
    ground truth and each aligned estimate with its ATE in the legend (raw estimates only
    when the runs have no common ground truth)."""
    if not runs:
        raise HndescError('no runs to compare')
    first = next(iter(runs.values()))
    gt = first['gt']
    shared = gt is not None and all(
        run['gt'] is not None and run['gt'].shape == gt.shape and np.allclose(run['gt'], gt)
        for run in runs.values())
    if not shared:
        LOG.warning('the runs share no ground truth; plotting the raw estimates')
        estimates = {name: run['poses'][:, :3, 3] for name, run in runs.items()}
        return plots.plot_comparison(estimates, path, title=title)
    estimates = {name: aligned_positions(run)[0] for name, run in runs.items()}
    ates = {name: run['metrics']['ate_rmse_m'] for name, run in runs.items()}
    m = first['metrics']
    full = (f'{title}, {describe_mode(m)}\n' if title else '') + (
        f'{len(gt)} frames, {m["path_length_m"]:.1f} m, {ALIGN_NAMES[m["align"]]} aligned')
    return plots.plot_comparison(estimates, path, gt[:, :3, 3], ates, full)


def format_metrics(m: Dict) -> str:
    """One readable block of the main figures."""
    lines = [f"frames {m['frames']} (tracked {m['frames_tracked']}, lost {m['tracking_lost']}, "
             f"keyframes {m['keyframes']}"
             + (f", stationary {m['stationary_frames']}" if m.get('stationary_frames') else '')
             + (f", smoother restarts {m['smoother_resets']}" if m.get('smoother_resets') else '')
             + (f", re-eliminated {m['smoother_rebuilds']}" if m.get('smoother_rebuilds') else '')
             + ')']
    if m.get('pairs_stretched') or m.get('pairs_blurred'):  # a camera in low light
        lines.append(f"light: {m.get('pairs_stretched', 0)} pairs stretched, "
                     f"{m.get('pairs_blurred', 0)} blurred against their noise")
    if 'ate_rmse_m' in m:
        lines.append(f"ATE RMSE {m['ate_rmse_m']:.3f} m ({m['ate_pct_of_path']:.2f} % of "
                     f"{m['path_length_m']:.1f} m, {m['align']}), RPE {m['rpe_trans_m']:.3f} m "
                     f"/ {m['rpe_rot_deg']:.3f} deg")
        if m.get('t_err_pct') is not None:
            lines.append(f"KITTI t_err {m['t_err_pct']:.2f} %  r_err "
                         f"{m['r_err_deg_per_100m']:.3f} deg/100 m")
    lines.append(f"{m['wall_fps']:.1f} frames/s over the whole run (front end "
                 f"{m['fps_frontend']:.1f}, back end {m['fps_backend']:.1f} by median stage "
                 f"times); {m['obs_per_landmark']:.2f} observations per landmark")
    return '\n'.join(lines)
