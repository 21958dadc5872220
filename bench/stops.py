#!/usr/bin/env python3
"""Drives that stop and reverse: variants of the shared KITTI sequences (real frames repeated
with fresh sensor noise, the ground truth held still; or forwards then backwards), through the
mono (GT scale) and stereo VO, next to the same frames without the stop, in one run.

    python bench/stops.py [--extractor residual-small] [--seed 0] [--json FILE]

For each row: frames, frames lost, frames taken as standing still, smoother restarts, the ATE
of the whole run, and the ATE of the same frames (the first appearance of each source frame;
the whole run counts a standing position once per repeat) next to the run without the stop.
Every run must finish: a traceback fails the bench.
"""
import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hndesc_ros.config import load_config  # noqa: E402
from hndesc_ros.datasets.kitti import KittiSequence  # noqa: E402
from hndesc_ros.datasets.variants import (ping_pong_order, stop_order,  # noqa: E402
                                          write_variant)
from hndesc_ros.eval import trajectory as tj  # noqa: E402
from hndesc_ros.runner import run_sequence  # noqa: E402
from peers import write_rows  # noqa: E402

DATA = Path(__file__).resolve().parent.parent.parent / 'shared' / 'data' / 'kitti' / 'sequences'

# (sequence, mono, frames, variant name, order)
CASES = [
    ('00', True, 200, 'stop 60 at 100', stop_order(200, 100, 60)),
    ('00', True, 200, 'rest 10, stop 40 at 100', [0] * 10 + stop_order(200, 100, 40)),
    ('00', True, 200, 'ping-pong', ping_pong_order(200)),
    ('06', False, 51, 'stop 40 at 25', stop_order(51, 25, 40)),
    ('06', False, 51, 'ping-pong', ping_pong_order(51)),
    ('01', False, 51, 'stop 40 at 25', stop_order(51, 25, 40)),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--extractor', default='residual-small')
    ap.add_argument('--seed', type=int, default=0, help='of the sensor noise')
    ap.add_argument('--json', help='write the rows here')
    args = ap.parse_args()
    cfg = load_config(None, {'features.extractor': args.extractor})
    clean, rows = {}, []
    with tempfile.TemporaryDirectory(prefix='hndesc-stops-') as tmp:
        for i, (name, mono, count, label, order) in enumerate(CASES):
            src = DATA / name
            if (name, mono) not in clean:
                clean[(name, mono)] = run_sequence(KittiSequence(src, count=count, mono=mono),
                                                   cfg, mono=mono, gt_scale=mono)['metrics']
            seq_dir = write_variant(src, Path(tmp) / str(i), order, seed=args.seed)
            run = run_sequence(KittiSequence(seq_dir, mono=mono), cfg, mono=mono, gt_scale=mono)
            m, c = run['metrics'], clean[(name, mono)]
            same = tj.first_appearance_ate(run['poses'], run['gt'], order)
            rows.append({'sequence': name, 'mode': 'mono GT scale' if mono else 'stereo',
                         'variant': label, 'frames': m['frames'], 'lost': m['tracking_lost'],
                         'standing': m['stationary_frames'], 'resets': m['smoother_resets'],
                         'ate_m': m['ate_rmse_m'], 'same_frames_ate_m': same,
                         'clean_ate_m': c['ate_rmse_m'], 'ratio': same / c['ate_rmse_m']})
            r = rows[-1]
            print(f"{name} {r['mode']:<13} {label:<24} frames {r['frames']:>3}  lost {r['lost']}"
                  f"  standing {r['standing']:>2}  restarts {r['resets']}  ATE {r['ate_m']:.3f}"
                  f"  same frames {same:.3f} vs {c['ate_rmse_m']:.3f} ({r['ratio']:.2f}x)",
                  flush=True)
    write_rows(args.json, rows)
    return 0


if __name__ == '__main__':
    sys.exit(main())
