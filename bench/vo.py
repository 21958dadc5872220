#!/usr/bin/env python3
"""Per-stage milliseconds per frame of the stereo VO on real KITTI frames, and the accuracy
table of the README (ATE, RPE, t_err where defined) for several extractors.

    python bench/vo.py [--sequences 06 01] [--extractors residual rootsift] [--json FILE]
"""
import argparse
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hndesc_ros.config import load_config  # noqa: E402
from hndesc_ros.datasets.kitti import KittiSequence  # noqa: E402
from hndesc_ros.vo.run import run_sequence  # noqa: E402

DATA = Path(__file__).resolve().parent.parent.parent / 'shared' / 'data' / 'kitti' / 'sequences'
STAGES = ('extract_left', 'extract_right', 'stereo_matching', 'temporal_matching', 'pnp',
          'smoother')


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--sequences', nargs='+', default=['06', '01'])
    p.add_argument('--extractors', nargs='+', default=['residual', 'rootsift'])
    p.add_argument('--keypoints', default='sift')
    p.add_argument('--json')
    a = p.parse_args()
    logging.basicConfig(level=logging.ERROR)
    rows = []
    for sname in a.sequences:
        seq = KittiSequence(DATA / sname)
        for ex in a.extractors:
            cfg = load_config(None, {'features.extractor': ex, 'features.keypoints': a.keypoints})
            m = run_sequence(seq, cfg)['metrics']
            rows.append((sname, ex, m))
            print(f'{sname} {ex}: ATE {m["ate_rmse_m"]:.3f} m', flush=True)
    print(f'\n{"seq":<4}{"extractor":<15}{"ATE m":>7}{"%path":>7}{"RPE m":>7}{"RPE deg":>8}'
          + ''.join(f'{s[:10]:>11}' for s in STAGES) + f'{"fps fe":>8}{"fps be":>8}')
    for sname, ex, m in rows:
        st = m['ms_per_stage']
        print(f'{sname:<4}{ex:<15}{m["ate_rmse_m"]:>7.3f}{m["ate_pct_of_path"]:>7.2f}'
              f'{m["rpe_trans_m"]:>7.3f}{m["rpe_rot_deg"]:>8.3f}'
              + ''.join(f'{st.get(s, 0):>11.1f}' for s in STAGES)
              + f'{m["fps_frontend"]:>8.2f}{m["fps_backend"]:>8.2f}')
    if a.json:
        Path(a.json).write_text(json.dumps([{'sequence': s, 'extractor': e, **m}
                                            for s, e, m in rows], indent=1))


if __name__ == '__main__':
    main()
