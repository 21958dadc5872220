#!/usr/bin/env python3
"""The front end's levers, measured one by one on a real KITTI 06 stereo pair (1226x370), CPU.

    python bench/extract.py [--threads 2] [--runs 9] [--variant residual-small]

Rows (median ms of the runs, this machine, this run):
- one plain OpenCV SIFT pass (2000 keypoints): the unit the VO bench divides by;
- SIFT as the project runs it: two passes (detect, then describe) vs one pass, with and
  without OpenCV's 2x-upsampled first octave;
- the network (ONNX Runtime) at full, half and 0.4 image size, for each variant, and the
  int8 twin of residual-small;
- whole extraction of one image: sequential vs SIFT || network;
- the stereo front end of one pair (everything before tracking): both images extracted, the
  right image with SIFT only, block matching (default), or KLT into the right image; left ||
  right.
"""
import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hndesc_ros.config import load_config  # noqa: E402
from hndesc_ros.features import Extractor, Sift, read_image  # noqa: E402
from hndesc_ros.features.extractor import prepare_input  # noqa: E402
from hndesc_ros.inference import create_backend  # noqa: E402
from hndesc_ros.models import shipped_weights  # noqa: E402
from hndesc_ros.types import StereoCalib  # noqa: E402
from hndesc_ros.vo.pipeline import StereoFrontend  # noqa: E402
from timing import median_ms  # noqa: E402

SEQ = Path(__file__).resolve().parent.parent.parent / 'shared' / 'data' / 'kitti' / \
    'sequences' / '06'


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--runs', type=int, default=9)
    p.add_argument('--variant', default='residual-small')
    a = p.parse_args()
    import cv2
    cv2.setNumThreads(a.threads)
    left = read_image(SEQ / 'image_0' / '000010.png', gray=True)
    right = read_image(SEQ / 'image_1' / '000010.png', gray=True)
    rows = []

    def row(name, fn):
        rows.append((name, median_ms(fn, a.runs)))
        print(f'{name:<58}{rows[-1][1]:>8.1f}', flush=True)

    print(f'KITTI 06 frame 10, {left.shape[1]}x{left.shape[0]}, {a.threads} threads, '
          f'load average {os.getloadavg()[0]:.2f}, median of {a.runs} runs')
    plain = cv2.SIFT_create(nfeatures=2000)
    row('plain OpenCV SIFT pass, 2000 kp (the unit)', lambda: plain.detectAndCompute(left, None))
    for up in (True, False):
        s = Sift(2000, upsample=up)
        tag = 'upsampled 1st octave' if up else 'no upsampling'
        if up:
            row(f'SIFT two passes (detect, describe), {tag}',
                lambda: s.describe(left, s.detect(left)))
        row(f'SIFT one pass, {tag}', lambda: s(left))
    for variant, fmt in (('residual', 'onnx'), ('residual-small', 'onnx'),
                         ('residual-small', 'int8.onnx'), ('cnn', 'onnx')):
        b = create_backend('onnxruntime', str(shipped_weights(variant, fmt)),
                           num_threads=a.threads)
        for scale in (1.0, 0.5, 0.4):
            img = left if scale == 1.0 else cv2.resize(
                left, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            x = prepare_input(img, 1)
            row(f'network {variant}{" int8" if "int8" in fmt else ""}, image x{scale}, '
                f'{a.threads} thread(s)', lambda: b.run(x))
    base = {'features.extractor': a.variant}
    for par in (False, True):
        ex = Extractor(load_config(None, {**base, 'features.parallel': par}).features)
        row(f'extract one image, {a.variant}, ' + ('SIFT || network' if par else 'sequential'),
            lambda: ex.extract(left))
    calib = StereoCalib(707.0912, 707.0912, 601.8873, 183.1104, 0.537, 1226, 370)
    for method in ('descriptor', 'sift', 'block', 'klt'):
        for par in (False, True):
            if method == 'klt' and par:
                continue
            cfg = load_config(None, {**base, 'matching.stereo_method': method,
                                     'features.parallel': par})
            fe = StereoFrontend(calib, cfg)
            row(f'stereo pair before tracking, {method} stereo'
                + (', left || right' if par else ''), lambda: fe.stereo_features(left, right))


if __name__ == '__main__':
    main()
