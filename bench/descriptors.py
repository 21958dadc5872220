#!/usr/bin/env python3
"""Descriptor comparison on real scenes never trained on, same SIFT keypoints for all:
HPatches v_churchill (MMA, homography accuracy) and KITTI 06 stereo / temporal pairs
(epipolar MMA).

    python bench/descriptors.py [--methods sift residual-small residual-small+fp32 ...]
                                [--extra NAME=CHECKPOINT ...] [--light dark bright]
                                [--kitti-only]

``--light``: also the KITTI temporal pairs with their second image darkened (``dark``: the
variants' dark change, gamma 1.6, gain 0.18, noise 3) or brightened (``bright``: gamma 0.6,
gain 1.6, clipped).

A method name ending in ``+fp32`` runs the network without its int8 twin (``features.int8``
off; the int8 model is ONNX Runtime's default where the package ships one).
"""
import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from hndesc_ros.config import FeatureConfig  # noqa: E402
from hndesc_ros.datasets.variants import change_light  # noqa: E402
from hndesc_ros.datasets.kitti import KittiSequence  # noqa: E402
from hndesc_ros.eval.hpatches import evaluate, format_table  # noqa: E402
from hndesc_ros.eval.pairs import kitti_pair_mma  # noqa: E402
from hndesc_ros.features import Extractor  # noqa: E402

DATA = Path(__file__).resolve().parent.parent.parent / 'shared' / 'data'


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--methods', nargs='+', default=['sift', 'rootsift', 'cnn', 'residual',
                                                    'residual-small'])
    p.add_argument('--extra', nargs='*', default=[], metavar='NAME=CHECKPOINT',
                   help='more residual checkpoints, e.g. cpu30=runs/x/hndesc_residual.pt')
    p.add_argument('--light', nargs='*', default=[], choices=('dark', 'bright'),
                   help='temporal pairs with the second image darkened / brightened')
    p.add_argument('--kitti-only', action='store_true', help='skip HPatches')
    a = p.parse_args()
    logging.basicConfig(level=logging.ERROR)

    def extractor(extractor, **kw):
        """The descriptor protocol: full-resolution SIFT keypoints, network at full size."""
        name, fp32 = extractor.removesuffix('+fp32'), extractor.endswith('+fp32')
        return Extractor(FeatureConfig(extractor=name, int8=not fp32, **kw)
                         .at_full_resolution()).extract

    ex = {m: extractor(extractor=m, max_keypoints=100000) for m in a.methods}
    for item in a.extra:
        name, ckpt = item.split('=', 1)
        ex[name] = extractor(extractor='residual', weights=ckpt, max_keypoints=100000)
    if not a.kitti_only:
        print('HPatches v_churchill, all SIFT keypoints, mutual NN:')
        print(format_table(evaluate(DATA / 'hpatches' / 'v_churchill', ex)), flush=True)
    seq = KittiSequence(DATA / 'kitti' / 'sequences' / '06')
    ex2 = {m: extractor(extractor=m, max_keypoints=2000) for m in a.methods}
    for item in a.extra:
        name, ckpt = item.split('=', 1)
        ex2[name] = extractor(extractor='residual', weights=ckpt)
    print('\nKITTI 06, 10 stereo + 10 temporal pairs, 2000 SIFT keypoints, mutual NN, '
          'epipolar MMA:')
    print(f'{"method":<16}{"stereo@1":>9}{"stereo@3":>9}{"temp@1":>8}{"temp@3":>8}')
    for name, fn in ex2.items():
        r = kitti_pair_mma(seq, fn)
        print(f'{name:<16}{r["stereo"]["mma@1"]:>9.3f}{r["stereo"]["mma@3"]:>9.3f}'
              f'{r["temporal"]["mma@1"]:>8.3f}{r["temporal"]["mma@3"]:>8.3f}', flush=True)
    changes = {'dark': {'gain': 0.18, 'gamma': 1.6, 'noise': 3.0},
               'bright': {'gain': 1.6, 'gamma': 0.6}}
    for light in a.light:
        print(f'\nKITTI 06 temporal pairs, the second image {light} '
              f'({changes[light]}): epipolar MMA')
        print(f'{"method":<16}{"temp@1":>8}{"temp@3":>8}')
        for name, fn in ex2.items():
            rng = np.random.default_rng(0)  # every method sees the same noise
            r = kitti_pair_mma(seq, fn, change=lambda im: change_light(im, changes[light], rng))
            print(f'{name:<16}{r["temporal"]["mma@1"]:>8.3f}{r["temporal"]["mma@3"]:>8.3f}',
                  flush=True)


if __name__ == '__main__':
    main()
