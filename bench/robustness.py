#!/usr/bin/env python3
"""Light that changes: the shared KITTI sequences under flicker, dark, exposure steps and motion
blur (``hndesc_ros.datasets.variants``, the same change for both images of a pair), through
hndesc (default and RootSIFT) and ORB-SLAM3 (stereo, ``../shared/tools/orbslam3_peer.py``,
median of ``--runs``), in one run.

    python bench/robustness.py [--sequences 06 01] [--extractors residual-small rootsift]
                               [--light flicker dark steps blur] [--runs 3] [--seed 0]
                               [--set key=value ...] [--json FILE]

Per variant and system: ATE, frames lost, the ratio to the same system's clean ATE, and the
ratio to ORB-SLAM3's ATE on the same variant, and the shape and scale apart (Sim(3) ATE and
path length over the ground truth's, as in ``peers.py``). ``--set`` overrides hndesc's config
(a lever under test).
"""
import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hndesc_ros.config import LIGHT_CHANGES, load_config, parse_overrides  # noqa: E402
from hndesc_ros.datasets.kitti import KittiSequence  # noqa: E402
from hndesc_ros.datasets.variants import write_variant  # noqa: E402
from hndesc_ros.runner import run_sequence  # noqa: E402
from peers import SHARED, orbslam3, write_rows  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--sequences', nargs='+', default=['06', '01'])
    ap.add_argument('--extractors', nargs='+', default=['residual-small', 'rootsift'])
    ap.add_argument('--light', nargs='+', default=list(LIGHT_CHANGES), choices=LIGHT_CHANGES)
    ap.add_argument('--runs', type=int, default=3, help='ORB-SLAM3 runs per variant (median)')
    ap.add_argument('--no-peer', action='store_true', help='hndesc only')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--set', action='append', default=[], metavar='KEY=VALUE')
    ap.add_argument('--json', help='write every figure here')
    args = ap.parse_args()
    over = parse_overrides(args.set)
    rows = []
    with tempfile.TemporaryDirectory(prefix='hndesc-light-') as tmp:
        for name in args.sequences:
            src = SHARED / 'data' / 'kitti' / 'sequences' / name
            poses = SHARED / 'data' / 'kitti' / 'poses' / f'{name}.txt'
            clean = {}
            for light in ['clean'] + args.light:
                seq_dir = src if light == 'clean' else write_variant(
                    src, Path(tmp) / f'{name}_{light}', list(range(len(KittiSequence(src)))),
                    seed=args.seed, light=light)
                peer = None
                if not args.no_peer:
                    load = os.getloadavg()[0]
                    p = orbslam3(seq_dir, poses, args.runs, False, Path(tmp) / f'o{name}{light}')
                    peer = p['ate_rmse_m']
                    clean.setdefault('ORB-SLAM3', peer)
                    rows.append({'sequence': name, 'light': light, 'system': 'ORB-SLAM3',
                                 'ate_m': peer, 'lost': p['lost'], 'load': load,
                                 'ate_sim3_m': p['ate_sim3_m'],
                                 'path_ratio': p['path_ratio'],
                                 'vs_clean': peer / clean['ORB-SLAM3']})
                for ex in args.extractors:
                    load = os.getloadavg()[0]
                    cfg = load_config(None, {**over, 'features.extractor': ex})
                    m = run_sequence(KittiSequence(seq_dir), cfg)['metrics']
                    clean.setdefault(ex, m['ate_rmse_m'])
                    rows.append({'sequence': name, 'light': light, 'system': f'hndesc {ex}',
                                 'ate_m': m['ate_rmse_m'], 'lost': m['tracking_lost'],
                                 'load': load, 'fps': m['wall_fps'],
                                 'ate_sim3_m': m['ate_sim3_m'],
                                 'path_ratio': m['path_ratio'],
                                 'vs_clean': m['ate_rmse_m'] / clean[ex],
                                 'vs_orbslam3': m['ate_rmse_m'] / peer if peer else None})
                for r in rows[-(len(args.extractors) + (peer is not None)):]:
                    vs = f", {r['vs_orbslam3']:.2f}x ORB-SLAM3" if r.get('vs_orbslam3') else ''
                    print(f"{name} {light:<8} {r['system']:<22} ATE {r['ate_m']:.3f} m (Sim(3) "
                          f"{r['ate_sim3_m']:.3f} m, length {r['path_ratio']:.3f}x), lost "
                          f"{r['lost']}, {r['vs_clean']:.2f}x clean{vs} (load {r['load']:.1f})",
                          flush=True)
    write_rows(args.json, rows)
    return 0


if __name__ == '__main__':
    sys.exit(main())
