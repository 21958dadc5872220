#!/usr/bin/env python3
"""Video that goes black: the shared KITTI stereo sequences with black pairs in the middle (a
covered lens, a lost stream; the camera moves on unseen), through hndesc and ORB-SLAM3
(stereo, ``../shared/tools/orbslam3_peer.py``, median of ``--runs``), in one run.

    python bench/blackout.py [--sequences 06 01] [--runs 3] [--no-peer] [--json FILE]

Each sequence is run clean, then with a blackout of 12 % of its frames starting at 40 % of it
(KITTI's 51 frames: 6 black pairs from frame 20, about 6 m on 06 and 13 m on 01), and with
two black pairs at 60 % (``hndesc_ros.datasets.variants.write_variant(blackout=...)``, also
``hndesc-vo variant --blackout FRAME:LENGTH``). Per copy and system: ATE, frames lost, the
Sim(3) ATE and the path length over the ground truth's, frames/s, and the load before it. The
black pairs themselves count as lost; what matters is the pose when the picture comes back.
"""
import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hndesc_ros.config import load_config  # noqa: E402
from hndesc_ros.datasets.kitti import KittiSequence  # noqa: E402
from hndesc_ros.datasets.variants import write_variant  # noqa: E402
from hndesc_ros.runner import run_sequence  # noqa: E402
from peers import SHARED, orbslam3, write_rows  # noqa: E402


def blackouts(count: int) -> Dict[str, List[int]]:
    """The copies of a sequence of ``count`` frames (at least 5).

    Args:
        count: frames of the sequence.
    Returns:
        {copy name: output frames written black}: none, 12 % of them from 40 % on (at least
        2), and 2 from 60 % on.
    """
    if count < 5:
        raise SystemExit(f'bench/blackout.py: {count} frames is too short for a blackout')
    long_at, long_len = int(0.4 * count), max(2, round(0.12 * count))
    short_at = int(0.6 * count)
    return {'clean': [],
            f'black {long_len} at {long_at}': list(range(long_at, long_at + long_len)),
            f'black 2 at {short_at}': [short_at, short_at + 1]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--sequences', nargs='+', default=['06', '01'])
    ap.add_argument('--runs', type=int, default=3, help='ORB-SLAM3 runs per copy (median)')
    ap.add_argument('--no-peer', action='store_true', help='hndesc only')
    ap.add_argument('--json', help='write the rows here')
    args = ap.parse_args()
    logging.getLogger('hndesc_ros').setLevel(logging.ERROR)  # a black pair is lost: expected
    cfg = load_config()
    rows = []
    with tempfile.TemporaryDirectory(prefix='hndesc-blackout-') as tmp:
        for name in args.sequences:
            src = SHARED / 'data' / 'kitti' / 'sequences' / name
            count = len(KittiSequence(src))
            for label, black in blackouts(count).items():
                out = Path(tmp) / f'{name}-{len(rows)}'
                seq_dir = write_variant(src, out, list(range(count)), blackout=black)
                poses = out / 'poses' / f'{name}.txt'
                if not args.no_peer:
                    load = os.getloadavg()[0]
                    p = orbslam3(seq_dir, poses, args.runs, False, out / 'orbslam3')
                    rows.append({'sequence': name, 'copy': label, 'system': 'ORB-SLAM3',
                                 'ate_m': p['ate_rmse_m'], 'lost': p['lost'],
                                 'ate_sim3_m': p['ate_sim3_m'], 'path_ratio': p['path_ratio'],
                                 'fps': p['wall_fps'], 'load': load})
                load = os.getloadavg()[0]
                m = run_sequence(KittiSequence(seq_dir), cfg)['metrics']
                rows.append({'sequence': name, 'copy': label, 'system': 'hndesc',
                             'ate_m': m['ate_rmse_m'], 'lost': m['tracking_lost'],
                             'ate_sim3_m': m['ate_sim3_m'], 'path_ratio': m['path_ratio'],
                             'fps': m['wall_fps'], 'load': load})
                for r in rows[-1 if args.no_peer else -2:]:
                    print(f"{name} {label:<14} {r['system']:<10} ATE {r['ate_m']:.3f} m (Sim(3) "
                          f"{r['ate_sim3_m']:.3f} m, length {r['path_ratio']:.3f}x), lost "
                          f"{r['lost']}, {r['fps']:.1f} frames/s (load {r['load']:.1f})",
                          flush=True)
    write_rows(args.json, rows)
    return 0


if __name__ == '__main__':
    sys.exit(main())
