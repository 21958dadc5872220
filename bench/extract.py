#!/usr/bin/env python3
"""Per-stage extraction timings on a real KITTI frame (1226x370), CPU.

    python bench/extract.py [--threads 2] [--runs 7]

Prints milliseconds (median of the runs): SIFT detect+describe, network per backend and variant
(the dense forward pass only), descriptor sampling, mutual-NN matching of 2k x 2k, and the
whole extraction per image with onnxruntime.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hndesc_ros.config import FeatureConfig  # noqa: E402
from hndesc_ros.features import Extractor, Sift, match_numpy, read_image  # noqa: E402
from hndesc_ros.features.extractor import prepare_input  # noqa: E402
from hndesc_ros.inference import create_backend  # noqa: E402
from hndesc_ros.models import shipped_weights  # noqa: E402
from hndesc_ros.models.sampling import sample_dense_numpy  # noqa: E402
from timing import median_ms  # noqa: E402

IMAGE = Path(__file__).resolve().parent.parent.parent / 'shared' / 'data' / 'kitti' / \
    'sequences' / '06' / 'image_0' / '000000.png'


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--runs', type=int, default=7)
    p.add_argument('--image', default=str(IMAGE))
    a = p.parse_args()
    import cv2
    import torch
    cv2.setNumThreads(a.threads)
    torch.set_num_threads(a.threads)
    img = read_image(a.image, gray=True)
    rows = []
    sift = Sift(2000)
    rows.append(('SIFT detect + describe (2000 kp)', median_ms(lambda: sift(img), a.runs)))
    kps, desc = sift.describe(img, sift.detect(img))
    xy = np.array([k.pt for k in kps], np.float32)
    x = prepare_input(img, 1)
    for be in ('torch', 'onnxruntime'):
        for variant in ('residual', 'cnn', 'residual-small'):
            b = create_backend(be, str(shipped_weights(variant)), num_threads=a.threads)
            s = desc if b.model_cfg.use_sift else None
            rows.append((f'network {be:<11} {variant}',
                         median_ms(lambda: b.run(x, s), a.runs)))
    ort = create_backend('onnxruntime', str(shipped_weights('residual')))
    dense = ort.run(x, desc)['dense'][0]
    rows.append(('sampling 2000 kp (numpy)',
                 median_ms(lambda: sample_dense_numpy(dense, xy), a.runs)))
    d = np.random.default_rng(0).normal(size=(2000, 256)).astype(np.float32)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    rows.append(('matching 2k x 2k mutual NN (numpy, 256-D)',
                 median_ms(lambda: match_numpy(d, d[::-1].copy(), 0.95), a.runs)))
    for variant in ('residual', 'residual-small', 'cnn'):
        ex = Extractor(FeatureConfig(extractor=variant, backend='onnxruntime',
                                     num_threads=a.threads))
        rows.append((f'whole extraction, onnxruntime, {variant}',
                     median_ms(lambda: ex.extract(img), a.runs)))
    print(f'{Path(a.image).name} {img.shape[1]}x{img.shape[0]}, {a.threads} threads, CPU, '
          f'median of {a.runs} runs')
    print(f'{"stage":<48}{"ms":>9}')
    for name, ms in rows:
        print(f'{name:<48}{ms:>9.1f}')


if __name__ == '__main__':
    main()
