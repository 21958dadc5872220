"""int8 static quantisation of an exported ONNX model (ONNX Runtime, QDQ format).

Convolutions get int8 weights (per output channel) and uint8 activations whose ranges are
calibrated on real images; everything else (the first convolution, whose input is the raw
image, the MLP f, normalisation, the detector's softmax) stays fp32. On the 2-core AVX2 CPU
(no VNNI) the dense pass of ``residual-small`` takes 0.7-0.8 of the fp32 time, with a cosine of
0.996-0.997 to the fp32 descriptors (README: MMA and ATE next to fp32).

Needs ``onnx`` (requirements-train.txt) to write the file; running it needs only onnxruntime.
Calibrate on images that are not evaluated (KITTI 00, never 06 or 01).
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Iterable, List

import numpy as np

from hndesc_ros.errors import BackendUnavailable, HndescError

LOG = logging.getLogger(__name__)


def quantize_int8(src: str | Path, dst: str | Path, images: Iterable[np.ndarray],
                  keep_fp32: int = 1) -> Path:
    """Write the int8 twin of the ONNX model ``src`` to ``dst``.

    Args:
        src: fp32 ONNX export (training/export.py).
        dst: output path (the metadata of ``src`` is copied: model config, checkpoint hash).
        images: calibration inputs, each (1, C, H, W) float32 as the runtime feeds them
            (:func:`~hndesc_ros.features.extractor.prepare_input` at the network scale).
        keep_fp32: how many leading convolutions stay fp32 (the first sees the raw image:
            quantising it drops the cosine to the fp32 descriptors from 0.996 to 0.81).
    Returns:
        ``dst``.
    """
    try:
        import onnx
        import onnxruntime as ort
        from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                              quantize_static)
    except ImportError as exc:
        raise BackendUnavailable(f'int8 export needs onnx and onnxruntime ({exc}): pip install '
                                 '-r requirements-train.txt') from None
    feeds: List[dict] = []
    model = onnx.load(str(src))
    inputs = [i.name for i in model.graph.input]
    for img in images:
        feed = {'image': np.ascontiguousarray(img, np.float32)}
        if 'sift' in inputs:
            feed['sift'] = np.zeros((1, 128), np.float32)
        feeds.append(feed)
    if not feeds:
        raise HndescError('int8 calibration needs at least one image')

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(feeds)

        def get_next(self):
            return next(self.it, None)

    with tempfile.TemporaryDirectory() as tmp:
        # fold the fp16 -> fp32 Casts of the stored weights (and BatchNorm) into plain fp32
        # initialisers first: the quantiser needs constant weights at each Conv
        folded = Path(tmp) / 'folded.onnx'
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        opts.optimized_model_filepath = str(folded)
        ort.InferenceSession(str(src), opts, providers=['CPUExecutionProvider'])
        convs = [n.name for n in onnx.load(str(folded)).graph.node if n.op_type == 'Conv']
        quantize_static(str(folded), str(dst), Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=['Conv'], per_channel=True,
                        nodes_to_exclude=convs[:keep_fp32])
    out = onnx.load(str(dst))
    meta = {p.key: p.value for p in model.metadata_props}
    meta['hndesc_int8'] = f'convolutions int8 except the first {keep_fp32}; {len(feeds)} ' \
                          'calibration images'
    del out.metadata_props[:]
    for key, value in meta.items():
        entry = out.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(out, str(dst))
    LOG.info('int8 model: %s (%d calibration images)', dst, len(feeds))
    return Path(dst)
