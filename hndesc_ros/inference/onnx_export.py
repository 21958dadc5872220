"""Export a descriptor network to ONNX (dynamic H and W; keypoint sampling stays outside).

Graph inputs: ``image`` (1, C, H, W) float32 and, for residual variants, ``sift`` (N, 128).
Graph outputs: ``dense`` (1, Dc, H/8, W/8), ``scores`` (1, H, W) if the model has a detector,
``refined`` (N, Dr) for residual variants. The ModelConfig is stored as JSON metadata.

Weights that are exactly representable in fp16 (all of them for the shipped checkpoints, which
store fp16) are kept in fp16 behind a Cast to fp32: lossless, half the file, and the runtime
folds the Cast (and BatchNorm into the convolutions) once when it loads the graph, so it still
computes in fp32. Constant folding at export is therefore off: folding BatchNorm here would
leave weights that fp16 cannot hold.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import List

import torch

from hndesc_ros.models.fusion import HNDescNet

LOG = logging.getLogger(__name__)
OPSET = 17


class _Graph(torch.nn.Module):
    def __init__(self, model: HNDescNet):
        super().__init__()
        self.model = model

    def forward(self, image, sift=None):
        out = self.model(image, sift)
        names = output_names(self.model)
        return tuple(out[n] for n in names)


def output_names(model: HNDescNet) -> List[str]:
    names = ['dense']
    if model.cfg.detector:
        names.append('scores')
    if model.cfg.use_sift:
        names.append('refined')
    return names


def export_onnx(model: HNDescNet, path: str | Path, height: int = 376, width: int = 1240,
                source: str | Path | None = None) -> Path:
    """Write ``model`` as ONNX to ``path``; returns the path. ``source``: the checkpoint it
    came from, whose content hash goes into the metadata (``hndesc_checkpoint_sha1``)."""
    model = model.eval().float().cpu()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = torch.rand(1, model.cfg.in_channels, height // 8 * 8, width // 8 * 8)
    args = (image,)
    inputs = ['image']
    axes = {'image': {2: 'height', 3: 'width'}, 'dense': {2: 'height8', 3: 'width8'},
            'scores': {1: 'height', 2: 'width'}}
    if model.cfg.use_sift:
        args = (image, torch.nn.functional.normalize(torch.rand(64, 128), dim=1))
        inputs.append('sift')
        axes.update({'sift': {0: 'num_keypoints'}, 'refined': {0: 'num_keypoints'}})
    names = output_names(model)
    axes = {k: v for k, v in axes.items() if k in inputs or k in names}
    tmp = path.with_suffix('.tmp.onnx')
    with torch.no_grad():
        torch.onnx.export(_Graph(model), args, str(tmp), input_names=inputs, output_names=names,
                          dynamic_axes=axes, opset_version=OPSET, dynamo=False,
                          do_constant_folding=False)
    import onnx
    proto = onnx.load(str(tmp))
    store_exact_fp16(proto)
    entry = proto.metadata_props.add()
    entry.key, entry.value = 'hndesc_model', json.dumps(asdict(model.cfg))
    if source is not None:
        entry = proto.metadata_props.add()
        entry.key, entry.value = 'hndesc_checkpoint_sha1', checkpoint_digest(source)
    onnx.save(proto, str(tmp))
    os.replace(tmp, path)
    LOG.info('exported ONNX %s (outputs %s)', path, names)
    return path


def store_exact_fp16(proto) -> int:
    """Store every fp32 initializer that fp16 holds exactly as fp16 followed by a Cast back
    to fp32 (in place); returns how many were converted."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper
    casts, converted = [], 0
    for init in proto.graph.initializer:
        if init.data_type != TensorProto.FLOAT:
            continue
        value = numpy_helper.to_array(init)
        half = value.astype(np.float16)
        if not np.array_equal(half.astype(np.float32), value):
            continue
        name = init.name
        init.CopyFrom(numpy_helper.from_array(half, f'{name}__fp16'))
        casts.append(helper.make_node('Cast', [f'{name}__fp16'], [name], to=TensorProto.FLOAT,
                                      name=f'{name}__to_fp32'))
        converted += 1
    nodes = casts + list(proto.graph.node)
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)
    return converted


def cache_dir() -> Path:
    """Where derived files (ONNX from a checkpoint, engines) go: $HNDESC_CACHE or ~/.cache."""
    root = os.environ.get('HNDESC_CACHE') or Path.home() / '.cache' / 'hndesc_ros'
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def checkpoint_digest(checkpoint: str | Path) -> str:
    """Short content hash of a checkpoint file (names and tags its exports)."""
    return hashlib.sha1(Path(checkpoint).read_bytes()).hexdigest()[:12]


def cached_onnx_for(checkpoint: str | Path) -> Path:
    """Export a checkpoint to ONNX once (keyed by its content hash) and return the path."""
    from hndesc_ros.models.checkpoint import load_checkpoint
    path = cache_dir() / f'{Path(checkpoint).stem}-{checkpoint_digest(checkpoint)}-op{OPSET}.onnx'
    if not path.exists():
        model, _ = load_checkpoint(checkpoint)
        export_onnx(model, path, source=checkpoint)
    return path
