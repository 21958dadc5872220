#!/usr/bin/env python3
"""One setting against another over a family of perturbed copies of each sequence.

A 51-frame run is chaotic: a change that moves no pose by more than a millimetre in its first
frames can move the final ATE by 50 %, so one run per sequence cannot tell two settings
apart. This bench writes, per shared sequence, seven variants that keep the scene and the
motion (``hndesc_ros.datasets.variants``): flicker with seeds 1-3, a stop at 20 % of the
sequence for 10 % of its length, one at 70 % for 15 %, exposure steps and motion blur. It runs
every configuration on all of them and reports the mean and median ATE, the mean ATE after
Sim(3) alignment (the shape, without the scale) and the mean wall frames/s per sequence, one
configuration after another (never two at once).

    python bench/family.py [--sequences 06 01] [--config 'features.sift_pixels=0' ...]
                           [--peer [--runs 3]] [--scale 0.5] [--held] [--json FILE]

Each ``--config`` is a space-separated list of ``key=value`` overrides ('' = the defaults).
``--offset SEQ=PX`` holds that sequence's disparity offset at PX instead of estimating it
(``vo.disparity_offset``, ``vo.estimate_disparity_offset: false``): on these short runs the
estimate spreads by about 0.1 px from one copy to the next and moves 01's ATE by a factor of
two, which hides what a tracking change does. ``python bench/depth_bias.py --pairs`` gives the
value the ground-truth motion implies (06 0.20, 01 1.27 px). ``--peer`` runs ORB-SLAM3 on the
same copies first (``../shared/tools/orbslam3_peer.py``, as ``peers.py`` does). ``--scale``
writes every copy as a camera of that size would see it (``hndesc-vo variant --scale``; a held
offset is then in that camera's pixels). ``--held`` runs every copy a second time with the
offset held from the first frame at the value the first run ended with: what the estimate's
transient (0 until three pairs, then a median of few) costs, and what a user who sets
``vo.disparity_offset`` from an earlier drive's ``disparity_offset_px`` gets.
"""
import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hndesc_ros.config import load_config, parse_overrides  # noqa: E402
from hndesc_ros.datasets.kitti import KittiSequence  # noqa: E402
from hndesc_ros.datasets.variants import stop_order, write_variant  # noqa: E402
from hndesc_ros.runner import run_sequence  # noqa: E402
from peers import SHARED, orbslam3, write_rows  # noqa: E402


def family(src: Path, out: Path, scale: float = 1.0) -> dict:
    """The seven variants of ``src`` (name -> sequence directory), written under ``out``, as a
    camera of ``scale`` times the size would see them."""
    n = len(KittiSequence(src))
    every = list(range(n))
    specs = {f'flicker{k}': dict(order=every, light='flicker', seed=k) for k in (1, 2, 3)}
    specs['stop20'] = dict(order=stop_order(n, int(0.2 * n), max(1, int(0.1 * n))))
    specs['stop70'] = dict(order=stop_order(n, int(0.7 * n), max(1, int(0.15 * n))))
    specs['steps'] = dict(order=every, light='steps')
    specs['blur'] = dict(order=every, light='blur')
    return {name: write_variant(src, out / name, scale=scale, **kw)
            for name, kw in specs.items()}


def print_summary(name: str, label: str, rows: list, load: float) -> None:
    """One line for a configuration's (or ORB-SLAM3's) ``rows`` over the copies of ``name``."""
    ates = [r['ate_m'] for r in rows]
    print(f"{name} [{label}] ATE mean {np.mean(ates):.3f} median {np.median(ates):.3f} m "
          f"(min {min(ates):.3f}, max {max(ates):.3f}), Sim(3) ATE mean "
          f"{np.mean([r['ate_sim3_m'] for r in rows]):.3f} m, "
          f"{np.mean([r['fps'] for r in rows]):.1f} frames/s, "
          f"{sum(r['lost'] for r in rows)} lost"
          + (f", {np.mean([r['mpo'] for r in rows]):.2f} observations per map point"
             if all('mpo' in r for r in rows) else '')
          + f', load {load:.1f}', flush=True)


def row(name: str, config: str, variant: str, held: float, m: dict, load: float) -> dict:
    """One run's figures as the bench stores them."""
    return {'sequence': name, 'config': config, 'variant': variant, 'offset_held_px': held,
            'ate_m': m['ate_rmse_m'], 'fps': m['wall_fps'], 'ate_sim3_m': m['ate_sim3_m'],
            'path_ratio': m['path_ratio'], 'lost': m['tracking_lost'],
            'mpo': m['map_point_observations'], 'load': load}


def offset_held_at(px: float) -> dict:
    """The overrides that hold the disparity offset at ``px`` instead of estimating it."""
    return {'vo.disparity_offset': px, 'vo.estimate_disparity_offset': False}


def peer_rows(name: str, variants: dict, runs: int, out: Path) -> list:
    """ORB-SLAM3 on every copy (``peers.orbslam3``), one printed line like a configuration's."""
    load = os.getloadavg()[0]
    rows = []
    for vname, seq_dir in variants.items():
        poses = seq_dir.parent.parent / 'poses' / f'{seq_dir.name}.txt'
        p = orbslam3(seq_dir, poses, runs, False, out / vname)
        rows.append({'sequence': name, 'config': 'ORB-SLAM3', 'variant': vname,
                     'ate_m': p['ate_rmse_m'], 'fps': p['wall_fps'],
                     'ate_sim3_m': p['ate_sim3_m'], 'path_ratio': p['path_ratio'],
                     'lost': p['lost'], 'load': load})
    print_summary(name, f'ORB-SLAM3, median of {runs}', rows, load)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--sequences', nargs='+', default=['06', '01'])
    ap.add_argument('--config', action='append', default=None, metavar="'K=V ...'")
    ap.add_argument('--offset', action='append', default=[], metavar='SEQ=PX',
                    help="hold a sequence's disparity offset at PX (px; no estimate)")
    ap.add_argument('--peer', action='store_true',
                    help='also ORB-SLAM3 on every copy (median of --runs runs each)')
    ap.add_argument('--runs', type=int, default=3, help='ORB-SLAM3 runs per copy')
    ap.add_argument('--held', action='store_true',
                    help='run every copy twice: estimating the offset, then holding it from the '
                         'first frame at the value the first run ended with')
    ap.add_argument('--scale', type=float, default=1.0,
                    help='copies as a camera of this many times the size (0.5: half)')
    ap.add_argument('--json', help='write every run here')
    args = ap.parse_args()
    try:
        offsets = {k: float(v) for k, v in (o.split('=', 1) for o in args.offset)}
    except ValueError:
        ap.error('--offset: SEQ=PX, e.g. 01=1.27')
    configs = args.config or ['']
    rows = []
    with tempfile.TemporaryDirectory(prefix='hndesc-family-') as tmp:
        for name in args.sequences:
            variants = family(SHARED / 'data' / 'kitti' / 'sequences' / name, Path(tmp) / name,
                              args.scale)
            if args.peer:
                rows += peer_rows(name, variants, args.runs, Path(tmp) / f'orb{name}')
            for text in configs:
                overrides = parse_overrides(text.split())
                if name in offsets:
                    overrides.update(offset_held_at(offsets[name]))
                cfg = load_config(None, overrides)
                label = text or 'defaults'
                load = os.getloadavg()[0]
                mine, second = [], []
                for vname, seq_dir in variants.items():
                    m = run_sequence(KittiSequence(seq_dir), cfg)['metrics']
                    mine.append(row(name, text, vname, offsets.get(name), m, load))
                    px = m['disparity_offset_px']
                    if args.held and px is not None:
                        again = load_config(None, {**overrides, **offset_held_at(px)})
                        m2 = run_sequence(KittiSequence(seq_dir), again)['metrics']
                        second.append(row(name, f'{text} held', vname, px, m2, load))
                print_summary(name, label, mine, load)
                if second:
                    print_summary(name, f'{label}, offset held at the estimate from the first '
                                  'frame', second, load)
                rows += mine + second
    write_rows(args.json, rows)
    return 0


if __name__ == '__main__':
    sys.exit(main())
