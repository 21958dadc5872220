#!/usr/bin/env python3
"""Export a trained checkpoint to the files the node runs: ONNX (always) and a TensorRT engine
(where TensorRT and a CUDA GPU are present).

    python training/export.py                                   # shipped residual model
    python training/export.py --checkpoint runs/residual/hndesc_residual.pt --out exports/

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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument('--checkpoint', default=str(shipped_weights('residual')))
    p.add_argument('--out', default='exports')
    p.add_argument('--image', default=str(DEFAULT_IMAGE), help='real image for validation')
    p.add_argument('--no-engine', action='store_true', help='ONNX only')
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
