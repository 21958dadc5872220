"""ONNX Runtime backend (CPU; the default where there is no GPU). Needs no torch."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from hndesc_ros.errors import BackendUnavailable, WeightsError, describe
from hndesc_ros.inference.base import Backend
from hndesc_ros.models.variants import ModelConfig


class OrtBackend(Backend):
    """Runs an exported ONNX graph.

    Args:
        weights: .onnx file (the shipped models have one next to their .pt), or a
            hndesc_ros checkpoint (.pt), exported once into the cache (needs torch).
        num_threads: intra-op threads.
        providers: ONNX Runtime execution providers (default CPU).
    Raises:
        WeightsError: the file is missing, not ONNX, or not exported by hndesc_ros.
    """

    name = 'onnxruntime'

    def __init__(self, weights: str, num_threads: int = 2, providers=None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendUnavailable('onnxruntime backend: pip install onnxruntime') from None
        path = onnx_for(Path(weights))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = num_threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(
                str(path), opts, providers=providers or ['CPUExecutionProvider'])
        except Exception as exc:  # onnxruntime raises its own Fail / InvalidProtobuf types
            raise WeightsError(f'{path}: not an ONNX model onnxruntime can load '
                               f'({ort_reason(exc)})') from None
        self.model_cfg = model_config_of(self.session.get_modelmeta().custom_metadata_map, path)
        self.path = path
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.inputs = [i.name for i in self.session.get_inputs()]

    def run(self, image: np.ndarray, sift: Optional[np.ndarray] = None,
            with_scores: bool = False) -> Dict[str, np.ndarray]:
        feeds = {'image': np.ascontiguousarray(image, np.float32)}
        n = 0 if sift is None else len(sift)
        if 'sift' in self.inputs:
            feeds['sift'] = (np.ascontiguousarray(sift, np.float32) if n
                             else np.zeros((1, 128), np.float32))
        res = dict(zip(self.outputs, self.session.run(None, feeds)))
        return self.finish(res, sift, with_scores)


def ort_reason(exc: Exception) -> str:
    """'[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load model from F failed:Protobuf parsing
    failed.' -> 'INVALID_PROTOBUF: Protobuf parsing failed.' (the file is named already)."""
    m = re.search(r':\s*([A-Z_]+)\s*:.*?failed:\s*(.*)$', str(exc).splitlines()[0]
                  if str(exc) else '')
    return f'{m.group(1)}: {m.group(2)}' if m else describe(exc)


def model_config_of(meta: Dict[str, str], path: Path) -> ModelConfig:
    """The ModelConfig stored in an export's metadata (WeightsError if there is none)."""
    if 'hndesc_model' not in meta:
        raise WeightsError(f'{path}: not exported by hndesc_ros (no hndesc_model metadata)')
    return ModelConfig.from_dict(json.loads(meta['hndesc_model']))


def onnx_for(path: Path) -> Path:
    """The ONNX file to run for ``path``: itself, or for a .pt checkpoint its export in the
    cache (exporting needs torch; the shipped models come with their .onnx next to the .pt)."""
    if not path.is_file():
        raise WeightsError(f'weights file not found: {path}')
    if path.suffix != '.pt':
        return path
    try:
        from hndesc_ros.inference.onnx_export import cached_onnx_for
    except ImportError:
        raise BackendUnavailable(f'{path}: exporting a .pt checkpoint to ONNX needs torch '
                                 '(pip install -r requirements-train.txt); or pass its .onnx') \
            from None
    return cached_onnx_for(path)
