#!/usr/bin/env python3
"""Learned vs SIFT keypoints on the real data: repeatability and MMA@3 on HPatches v_churchill,
and stereo VO ATE on KITTI 06, for the descriptor choices available with each.

    python bench/keypoints.py
"""
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hndesc_ros.config import FeatureConfig, load_config  # noqa: E402
from hndesc_ros.datasets.kitti import KittiSequence  # noqa: E402
from hndesc_ros.eval.hpatches import evaluate_scene  # noqa: E402
from hndesc_ros.features import Extractor  # noqa: E402
from hndesc_ros.runner import run_sequence  # noqa: E402

DATA = Path(__file__).resolve().parent.parent.parent / 'shared' / 'data'
COMBOS = [('sift', 'rootsift'), ('sift', 'cnn'), ('sift', 'residual'),
          ('learned', 'cnn'), ('learned', 'residual')]


def main():
    logging.basicConfig(level=logging.ERROR)
    seq = KittiSequence(DATA / 'kitti' / 'sequences' / '06')
    print(f'{"keypoints":<10}{"descriptor":<11}{"repeat.":>8}{"MMA@3":>7}{"kpts":>7}'
          f'{"ATE 06 (m)":>12}', flush=True)
    for kp, desc in COMBOS:
        fc = FeatureConfig(extractor=desc, keypoints=kp, max_keypoints=2000).at_full_resolution()
        r = evaluate_scene(DATA / 'hpatches' / 'v_churchill', Extractor(fc).extract)
        cfg = load_config(None, {'features.extractor': desc, 'features.keypoints': kp})
        ate = run_sequence(seq, cfg)['metrics']['ate_rmse_m']
        print(f'{kp:<10}{desc:<11}{r["repeatability"]:>8.3f}{r["mma@3"]:>7.3f}'
              f'{r["keypoints"]:>7.0f}{ate:>12.3f}', flush=True)


if __name__ == '__main__':
    main()
