"""TensorRT backend: builds (offline) and runs an fp16 engine from the exported ONNX.

Engines are specific to the GPU model, the TensorRT version and the optimisation profile, so
the file name carries all three (:func:`engine_name`) and a stale engine is never loaded.
Requires ``tensorrt`` (NVIDIA's Python wheel) and a CUDA build of torch for device buffers.
"""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from hndesc_ros.errors import BackendUnavailable, ConfigError, WeightsError
from hndesc_ros.inference.base import Backend
from hndesc_ros.models.variants import ModelConfig

LOG = logging.getLogger(__name__)
# (min, opt, max) of (height, width); KITTI 1241x376 pads to 1248x376 and lies inside.
DEFAULT_PROFILE = ((120, 160), (376, 1248), (512, 1408))
KEYPOINT_PROFILE = (1, 2048, 8192)


def _import_trt():
    try:
        import tensorrt as trt
    except ImportError:
        raise BackendUnavailable('tensorrt backend: install NVIDIA TensorRT (pip install '
                                 'tensorrt) on a machine with a CUDA GPU') from None
    import torch
    if not torch.cuda.is_available():
        raise BackendUnavailable('tensorrt backend: no CUDA device visible to torch')
    return trt


def engine_name(onnx_path: str | Path, profile=DEFAULT_PROFILE, fp16: bool = True) -> str:
    """``<onnx stem>__<gpu>__trt<version>__<profile>__fp16.engine``."""
    trt = _import_trt()
    import torch
    gpu = re.sub(r'[^A-Za-z0-9]+', '-', torch.cuda.get_device_name()).strip('-')
    prof = '_'.join(f'{h}x{w}' for h, w in profile)
    return f'{Path(onnx_path).stem}__{gpu}__trt{trt.__version__}__{prof}__' \
           f'{"fp16" if fp16 else "fp32"}.engine'


def build_engine(onnx_path: str | Path, out_dir: str | Path,
                 profile: Sequence[Tuple[int, int]] = DEFAULT_PROFILE, fp16: bool = True,
                 workspace_gb: float = 2.0) -> Path:
    """Build a serialized engine from ONNX with one optimisation profile; returns its path."""
    trt = _import_trt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errs = '; '.join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise WeightsError(f'TensorRT could not parse {onnx_path}: {errs}')
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    opt = builder.create_optimization_profile()
    channels = network.get_input(0).shape[1]
    (h0, w0), (h1, w1), (h2, w2) = profile
    opt.set_shape('image', (1, channels, h0, w0), (1, channels, h1, w1), (1, channels, h2, w2))
    for i in range(network.num_inputs):
        if network.get_input(i).name == 'sift':
            k0, k1, k2 = KEYPOINT_PROFILE
            opt.set_shape('sift', (k0, 128), (k1, 128), (k2, 128))
    config.add_optimization_profile(opt)
    blob = builder.build_serialized_network(network, config)
    if blob is None:
        raise ConfigError(f'TensorRT engine build failed for {onnx_path}')
    out = Path(out_dir) / engine_name(onnx_path, profile, fp16)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(bytes(blob))
    import onnx
    meta = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    out.with_suffix('.json').write_text(meta.get('hndesc_model', '{}'))
    LOG.info('built TensorRT engine %s', out)
    return out


class TensorRTBackend(Backend):
    """Runs a serialized engine (path from :func:`build_engine`) on CUDA via torch buffers.

    Args:
        weights: a ``.engine`` file (its ``.json`` sidecar holds the ModelConfig), or a
            ``.onnx``/``.pt`` from which an engine is built into the cache on first use.
    """

    name = 'tensorrt'

    def __init__(self, weights: str, fp16: bool = True, **_):
        trt = _import_trt()
        import torch
        path = Path(weights)
        if path.suffix in ('.pt', '.onnx'):
            from hndesc_ros.inference.onnx_export import cache_dir, cached_onnx_for
            onnx_path = cached_onnx_for(path) if path.suffix == '.pt' else path
            path = cache_dir() / engine_name(onnx_path, fp16=fp16)
            if not path.exists():
                build_engine(onnx_path, cache_dir(), fp16=fp16)
        if not path.is_file():
            raise WeightsError(f'TensorRT engine not found: {path}')
        sidecar = path.with_suffix('.json')
        try:
            self.model_cfg = ModelConfig.from_dict(json.loads(sidecar.read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise WeightsError(f'{path}: its model sidecar {sidecar.name} is missing or invalid '
                               f'({type(exc).__name__})') from None
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise WeightsError(f'{path}: not an engine this TensorRT {trt.__version__} and GPU '
                               'can load (engines are built per GPU and TensorRT version)')
        self.path = path
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream()
        self.names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in self.names
                       if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.torch = torch
        lo, _, hi = self.engine.get_tensor_profile_shape('image', 0)  # (1, C, H, W) each
        self.min_input, self.max_input = tuple(lo[2:]), tuple(hi[2:])

    def check_size(self, height: int, width: int) -> None:
        """An image outside the engine's optimisation profile is a WeightsError naming it."""
        (h0, w0), (h1, w1) = self.min_input, self.max_input
        if not (h0 <= height <= h1 and w0 <= width <= w1):
            raise WeightsError(f'{self.path}: engine built for images from {h0}x{w0} to '
                               f'{h1}x{w1} (HxW), got {height}x{width}; rebuild it with '
                               'training/export.py --profile')

    def run_torch(self, image, sift=None, with_scores: bool = False) -> Dict:
        """Tensors on CUDA in, tensors on CUDA out (same contract as the torch backend)."""
        torch = self.torch
        self.check_size(*image.shape[2:])
        feeds = {'image': image.float().contiguous()}
        n = 0 if sift is None else len(sift)
        if 'sift' in self.inputs:
            feeds['sift'] = (sift.float().contiguous() if n
                             else torch.zeros(1, 128, device=image.device))
        for name, t in feeds.items():
            self.context.set_input_shape(name, tuple(t.shape))
            self.context.set_tensor_address(name, t.data_ptr())
        outs = {}
        for name in self.names:
            if name in feeds:
                continue
            shape = tuple(self.context.get_tensor_shape(name))
            outs[name] = torch.empty(shape, dtype=torch.float32, device=image.device)
            self.context.set_tensor_address(name, outs[name].data_ptr())
        torch.cuda.current_stream().synchronize()
        self.context.execute_async_v3(self.stream.cuda_stream)
        self.stream.synchronize()
        return self.finish(outs, sift, with_scores)

    def run(self, image: np.ndarray, sift: Optional[np.ndarray] = None,
            with_scores: bool = False) -> Dict[str, np.ndarray]:
        torch = self.torch
        img = torch.from_numpy(image).cuda()
        s = torch.from_numpy(sift).cuda() if sift is not None else None
        return {k: v.cpu().numpy() for k, v in self.run_torch(img, s, with_scores).items()}
