#!/usr/bin/env python3
"""Stereo VO on real KITTI frames: accuracy, wall-clock frame rate and ms per stage, side by
side for several extractors, in one run (machines of the same kind differ 2-3x in speed).

    python bench/vo.py [--sequences 06 01] [--extractors residual-small rootsift]
                       [--set key=value ...] [--json FILE] [--png FILE]

Also times one plain OpenCV SIFT pass (2000 keypoints, the same frame, this run) and prints
each frame time as a multiple of it, so figures from different machines can be compared; and
writes a stacked bar chart of the stages (PNG).
"""
import argparse
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hndesc_ros.config import load_config, parse_overrides  # noqa: E402
from hndesc_ros.datasets.kitti import KittiSequence  # noqa: E402
from hndesc_ros.runner import run_sequence  # noqa: E402

DATA = Path(__file__).resolve().parent.parent.parent / 'shared' / 'data' / 'kitti' / 'sequences'
# stage groups of the per-frame timings (ms, median over frames)
GROUPS = {'extraction': ('extract_left', 'extract_right'),
          'stereo matching': ('stereo_matching',),
          'tracking (local map + PnP)': ('map_matching', 'map_update', 'pnp'),
          'mapping (keyframes + GTSAM; inline by default)': ('mapping',)}


def plain_sift_ms(image, runs: int = 9) -> float:
    import cv2
    sift = cv2.SIFT_create(nfeatures=2000)
    sift.detectAndCompute(image, None)
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        sift.detectAndCompute(image, None)
        out.append((time.perf_counter() - t) * 1e3)
    return statistics.median(out)


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--sequences', nargs='+', default=['06', '01'])
    p.add_argument('--extractors', nargs='+', default=['residual-small', 'rootsift'])
    p.add_argument('--set', nargs='*', default=[], metavar='KEY=VALUE',
                   help='config overrides for every run, e.g. vo.async_mapping=false')
    p.add_argument('--json')
    p.add_argument('--png', default='outputs/bench/vo_stages.png')
    a = p.parse_args()
    logging.basicConfig(level=logging.ERROR)
    overrides = parse_overrides(a.set)
    load = os.getloadavg()[0]
    rows = []
    for sname in a.sequences:
        seq = KittiSequence(DATA / sname)
        sift_ms = plain_sift_ms(seq.frame(0).left)
        for ex in a.extractors:
            cfg = load_config(None, {**overrides, 'features.extractor': ex})
            m = run_sequence(seq, cfg)['metrics']
            m['plain_sift_ms'] = sift_ms
            m['frame_ms'] = 1000.0 / m['wall_fps']
            rows.append((sname, ex, m))
            print(f'{sname} {ex}: ATE {m["ate_rmse_m"]:.3f} m, {m["wall_fps"]:.2f} frames/s',
                  flush=True)
    print(f'\nload average before the runs: {load:.2f} (2 cores); overrides: {overrides}')
    head = (f'{"seq":<4}{"extractor":<16}{"ATE m":>7}{"%path":>7}{"RPE m":>7}{"wall fps":>9}'
            f'{"frame ms":>9}{"x SIFT":>7}{"obs/lm":>7}{"len":>6}')
    print(head + ''.join(f'{g.split(" ")[0][:10]:>11}' for g in GROUPS))
    for sname, ex, m in rows:
        st = m['ms_per_stage']
        print(f'{sname:<4}{ex:<16}{m["ate_rmse_m"]:>7.3f}{m["ate_pct_of_path"]:>7.2f}'
              f'{m["rpe_trans_m"]:>7.3f}{m["wall_fps"]:>9.2f}{m["frame_ms"]:>9.1f}'
              f'{m["frame_ms"] / m["plain_sift_ms"]:>7.2f}{m["obs_per_landmark"]:>7.2f}'
              f'{m["track_length"]:>6.2f}'
              + ''.join(f'{sum(st.get(s, 0.0) for s in keys):>11.1f}'
                        for keys in GROUPS.values()))
    print('x SIFT: frame time / one plain OpenCV SIFT pass (2000 kp) on frame 0, same run; '
          'stages: median ms per frame')
    if a.json:
        Path(a.json).write_text(json.dumps([{'sequence': s, 'extractor': e, **m}
                                            for s, e, m in rows], indent=1))
    if a.png:
        plot_stages(rows, Path(a.png))
        print(f'stacked bars: {a.png}')


def plot_stages(rows, path: Path) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    labels = [f'{s} {e}' for s, e, _ in rows]
    bottom = [0.0] * len(rows)
    for name, keys in GROUPS.items():
        vals = [sum(m['ms_per_stage'].get(k, 0.0) for k in keys) for _, _, m in rows]
        ax.barh(labels, vals, left=bottom, label=name)
        bottom = [b + v for b, v in zip(bottom, vals)]
    for i, (_, _, m) in enumerate(rows):
        ax.plot([m['frame_ms']] * 2, [i - 0.4, i + 0.4], 'k-', lw=2)
    ax.axvline(100.0, color='r', ls='--', lw=1, label='10 Hz camera (100 ms)')
    ax.set_xlabel('ms per frame (bars: median per stage; black tick: wall-clock frame time)')
    ax.legend(fontsize=7, loc='upper center', bbox_to_anchor=(0.5, -0.2), ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == '__main__':
    main()
