#!/usr/bin/env python3
"""Export a trained checkpoint to the files the node runs: ONNX (always) and a TensorRT engine
(where TensorRT and a CUDA GPU are present).

    python training/export.py                                   # shipped residual model
    python training/export.py --checkpoint runs/residual/hndesc_residual.pt --out exports/
    python training/export.py --checkpoint hndesc_ros/weights/hndesc_residual-small.pt \
        --no-engine --int8                           # + the int8 twin for the CPU (ONNX Runtime)

The ONNX graph (opset 17, dynamic H and W, dense descriptor map output; keypoint sampling stays
outside the graph) is validated against PyTorch on a real KITTI frame before it is kept.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hndesc_ros.errors import BackendUnavailable, HndescError  # noqa: E402
from hndesc_ros.features.extractor import prepare_input  # noqa: E402
from hndesc_ros.features.image import read_image  # noqa: E402
from hndesc_ros.features.sift import Sift  # noqa: E402
from hndesc_ros.inference.onnx_export import export_onnx  # noqa: E402
from hndesc_ros.inference.ort_backend import OrtBackend  # noqa: E402
from hndesc_ros.inference.torch_backend import TorchBackend  # noqa: E402
from hndesc_ros.models.checkpoint import load_checkpoint  # noqa: E402
from hndesc_ros.models.variants import shipped_weights  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CALIBRATION = ROOT.parent / 'shared' / 'data' / 'kitti' / 'sequences' / '00' / 'image_0'
DEFAULT_IMAGE = ROOT.parent / 'shared' / 'data' / 'kitti' / 'sequences' / '06' / 'image_0' / \
    '000000.png'


def validate(checkpoint: Path, onnx_path: Path, image_path: Path, tol: float = 1e-4) -> float:
    """Max abs difference between PyTorch and ONNX Runtime outputs on a real image."""
    img = read_image(image_path, gray=True)
    x = prepare_input(img, 1)
    sift = Sift(1000)
    _, desc = sift.describe(img, sift.detect(img))
    a = TorchBackend(str(checkpoint))
    b = OrtBackend(str(onnx_path))
    s = desc if a.model_cfg.use_sift else None
    oa, ob = a.run(x, s, with_scores=True), b.run(x, s, with_scores=True)
    err = max(float(np.abs(oa[k] - ob[k]).max()) for k in oa)
    if err > tol:
        raise HndescError(f'ONNX export differs from PyTorch by {err:.2e} (> {tol})')
    return err


def calibration_inputs(folder: Path, count: int, scale: float, in_channels: int):
    """Every k-th image of ``folder`` (``count`` in all), resized by ``scale`` and prepared as
    the runtime feeds the network."""
    import cv2
    files = sorted(folder.glob('*.png'))
    if not files or count < 1:
        raise HndescError(f'int8 calibration needs at least one PNG image in {folder}')
    for path in files[::max(len(files) // count, 1)][:count]:
        img = read_image(path, gray=in_channels == 1)
        h, w = img.shape[:2]
        img = cv2.resize(img, (max(round(w * scale), 8), max(round(h * scale), 8)),
                         interpolation=cv2.INTER_AREA)
        yield prepare_input(img, in_channels)


def int8_agreement(fp32: Path, int8: Path, image_path: Path, scale: float) -> float:
    """Mean cosine between the fp32 and int8 dense descriptors on a real image."""
    import cv2
    img = read_image(image_path, gray=True)
    h, w = img.shape[:2]
    x = prepare_input(cv2.resize(img, (max(round(w * scale), 8), max(round(h * scale), 8)),
                                 interpolation=cv2.INTER_AREA), 1)
    a = OrtBackend(str(fp32)).run(x)['dense']
    b = OrtBackend(str(int8)).run(x)['dense']
    return float(np.mean(np.sum(a * b, axis=1)))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument('--checkpoint', default=str(shipped_weights('residual')))
    p.add_argument('--out', default='exports')
    p.add_argument('--image', default=str(DEFAULT_IMAGE), help='real image for validation')
    p.add_argument('--no-engine', action='store_true', help='ONNX only')
    p.add_argument('--int8', action='store_true',
                   help='also write <name>.int8.onnx, calibrated on --calibration')
    p.add_argument('--calibration', default=str(DEFAULT_CALIBRATION),
                   help='folder of images for int8 calibration (never an evaluated sequence)')
    p.add_argument('--calibration-images', type=int, default=20)
    p.add_argument('--network-scale', type=float, default=0.4,
                   help='image scale the int8 ranges are calibrated at (features.network_scale)')
    p.add_argument('--fp32-engine', action='store_true', help='TensorRT without fp16')
    p.add_argument('--profile', default='120x160,376x1248,512x1408',
                   help='TensorRT min,opt,max HxW (KITTI 1241x376 pads to 1248x376)')
    args = p.parse_args(argv)
    try:
        ckpt = Path(args.checkpoint)
        model, _ = load_checkpoint(ckpt)
        out = Path(args.out)
        onnx_path = export_onnx(model, out / f'{ckpt.stem}.onnx', source=ckpt)
        err = validate(ckpt, onnx_path, Path(args.image))
        print(f'ONNX: {onnx_path} (opset 17, dynamic H/W; max |torch - onnxruntime| = {err:.1e})')
        if args.int8:
            from hndesc_ros.inference.quantize import quantize_int8
            int8 = quantize_int8(onnx_path, out / f'{ckpt.stem}.int8.onnx', calibration_inputs(
                Path(args.calibration), args.calibration_images, args.network_scale,
                model.cfg.in_channels))
            cos = int8_agreement(onnx_path, int8, Path(args.image), args.network_scale)
            print(f'int8 ONNX: {int8} (mean cosine to the fp32 dense descriptors {cos:.4f})')
        if args.no_engine:
            return 0
        from hndesc_ros.inference.tensorrt_backend import build_engine
        profile = [tuple(int(v) for v in s.split('x')) for s in args.profile.split(',')]
        try:
            engine = build_engine(onnx_path, out, profile, fp16=not args.fp32_engine)
            print(f'TensorRT engine: {engine}')
        except BackendUnavailable as exc:
            print(f'TensorRT engine not built: {exc}')
    except (HndescError, FileNotFoundError) as exc:
        print(f'export.py: {exc}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
