#!/usr/bin/env python3
"""GPU front end at KITTI resolution (1241x376): per-stage milliseconds and stereo frames per
second, plus the CPU numbers from the same script for the ratio.

    python bench/gpu.py --device cuda            # on a machine with an NVIDIA GPU
    python bench/gpu.py --device cpu --runs 3    # the CPU reference

Frames: KITTI 01 stereo pairs from ../shared/data (or --left/--right folders).
"""
import argparse
import glob
import sys
from pathlib import Path

import cv2
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hndesc_ros.config import Config, FeatureConfig  # noqa: E402
from hndesc_ros.features.gpu import GpuStereoFrontend, topk_keypoints  # noqa: E402
from hndesc_ros.features.matching import match_torch  # noqa: E402
from hndesc_ros.models import load_checkpoint, shipped_weights  # noqa: E402
from hndesc_ros.models.sampling import sample_dense_torch  # noqa: E402
from timing import median_ms  # noqa: E402

SEQ = Path(__file__).resolve().parent.parent.parent / 'shared' / 'data' / 'kitti' / 'sequences' \
    / '01'


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--runs', type=int, default=50)
    p.add_argument('--left', default=str(SEQ / 'image_0'))
    p.add_argument('--right', default=str(SEQ / 'image_1'))
    p.add_argument('--variant', default='cnn')
    a = p.parse_args()
    dev = torch.device(a.device)
    cuda = dev.type == 'cuda'
    if not cuda:
        torch.set_num_threads(2)
    else:
        torch.backends.cudnn.benchmark = True  # fixed sizes: cuDNN autotunes once
    lefts = sorted(glob.glob(a.left + '/*'))[:20]
    rights = sorted(glob.glob(a.right + '/*'))[:20]
    L = [cv2.imread(f, cv2.IMREAD_GRAYSCALE) for f in lefts]
    R = [cv2.imread(f, cv2.IMREAD_GRAYSCALE) for f in rights]
    h, w = L[0].shape
    hp, wp = (h + 7) // 8 * 8, (w + 7) // 8 * 8
    weights = str(shipped_weights(a.variant))
    model, _ = load_checkpoint(weights)
    model = model.to(dev).eval()
    rows = []
    x1 = torch.rand(1, 1, hp, wp, device=dev)
    x2 = torch.rand(2, 1, hp, wp, device=dev)

    def net(x, half):
        with torch.inference_mode(), torch.autocast(dev.type, torch.float16, enabled=half):
            f = model.h.encode(x)
            return model.h.describe(f), model.h.detect(f)

    rows.append(('network fp32 (1 image)', median_ms(lambda: net(x1, False), a.runs, cuda)))
    if cuda:
        model.to(memory_format=torch.channels_last)
        xc = x1.contiguous(memory_format=torch.channels_last)
        rows.append(('network fp16 channels_last (1 image)',
                     median_ms(lambda: net(xc, True), a.runs, cuda)))
        x2c = x2.contiguous(memory_format=torch.channels_last)
        rows.append(('network fp16, stereo pair batched, per image',
                     median_ms(lambda: net(x2c, True), a.runs, cuda) / 2))
    with torch.inference_mode():
        dense, scores = net(x1, False)
        scores = scores[:, :h, :w].float()
        rows.append(('detection (NMS + top-2000)', median_ms(
            lambda: topk_keypoints(scores, 2000), a.runs, cuda)))
        xy, _, _ = topk_keypoints(scores, 2000)
        rows.append(('sampling 2000 keypoints', median_ms(
            lambda: sample_dense_torch(dense.float(), xy), a.runs, cuda)))
        d = torch.nn.functional.normalize(torch.randn(2000, 256, device=dev), dim=1)
        rows.append(('matching 2k x 2k mutual NN + ratio', median_ms(
            lambda: match_torch(d, d.flip(0), 0.95), a.runs, cuda)))
    sift = cv2.SIFT_create(2000)
    rows.append(('OpenCV SIFT on the CPU (1 image)', median_ms(
        lambda: sift.detectAndCompute(L[0], None), max(3, a.runs // 10), False)))
    try:
        import kornia.feature as KF
        ksift = KF.SIFTFeature(num_features=2000, device=dev)
        img = torch.from_numpy(L[0]).to(dev).float()[None, None] / 255
        with torch.inference_mode():
            rows.append(('kornia SIFT on the device (1 image)',
                         median_ms(lambda: ksift(img), max(3, a.runs // 5), cuda)))
    except ImportError:
        rows.append(('kornia SIFT on the device: kornia not installed', float('nan')))
    cfg = Config(features=FeatureConfig(extractor=a.variant, weights=weights, device=a.device,
                                        fp16=cuda))
    for graph in ([False, True] if cuda else [False]):
        fe = GpuStereoFrontend(cfg, h, w, graph=graph)
        i = [0]

        def frame():
            out = fe.process(L[i[0] % len(L)], R[i[0] % len(R)])
            i[0] += 1
            return out
        label = 'stereo frame end to end (upload, net, detect, sample, stereo+temporal match)'
        ms = median_ms(frame, a.runs, cuda)
        rows.append((label + (', CUDA graph' if graph else ''), ms))
        out = frame()
        n_stereo = int((out['stereo'] >= 0).sum())
        n_temp = int((out['temporal'] >= 0).sum())
    name = torch.cuda.get_device_name() if cuda else 'CPU (2 threads)'
    print(f'\n{name}, {w}x{h}, variant {a.variant}, torch {torch.__version__}, median of '
          f'{a.runs} runs (CUDA events on the GPU)')
    print(f'{"stage":<92}{"ms":>9}')
    for label, ms in rows:
        print(f'{label:<92}{ms:>9.3f}')
    print(f'stereo frames per second end to end: {1000 / rows[-1][1]:.1f} '
          f'(last frame: {n_stereo} stereo, {n_temp} temporal matches)')


if __name__ == '__main__':
    main()
