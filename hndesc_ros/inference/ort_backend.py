"""ONNX Runtime backend (CPU; the default where there is no GPU)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from hndesc_ros.errors import BackendUnavailable, ConfigError
from hndesc_ros.inference.base import Backend
from hndesc_ros.models.fusion import ModelConfig


class OrtBackend(Backend):
    """Runs an exported ONNX graph (a .pt checkpoint is exported once to the cache).

    Args:
        weights: .onnx file, or a hndesc_ros checkpoint (.pt).
        num_threads: intra-op threads.
        providers: ONNX Runtime execution providers (default CPU).
    """

    name = 'onnxruntime'

    def __init__(self, weights: str, num_threads: int = 2, providers=None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendUnavailable('onnxruntime backend: pip install onnxruntime') from None
        path = Path(weights)
        if path.suffix == '.pt':
            from hndesc_ros.inference.onnx_export import cached_onnx_for
            path = cached_onnx_for(path)
        if not path.is_file():
            raise ConfigError(f'ONNX model not found: {path}')
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = num_threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), opts,
                                            providers=providers or ['CPUExecutionProvider'])
        meta = self.session.get_modelmeta().custom_metadata_map
        if 'hndesc_model' not in meta:
            raise ConfigError(f'{path}: not exported by hndesc_ros (no hndesc_model metadata)')
        self.model_cfg = ModelConfig(**json.loads(meta['hndesc_model']))
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
