"""Inference backends behind one interface, chosen by name; choosing one imports only it."""
from __future__ import annotations

import importlib
from typing import Dict

from hndesc_ros.errors import BackendUnavailable, ConfigError
from hndesc_ros.inference.base import Backend

#: name -> (module, class, what to install if it is missing)
REGISTRY: Dict[str, tuple] = {
    'torch': ('hndesc_ros.inference.torch_backend', 'TorchBackend', 'pip install torch'),
    'onnxruntime': ('hndesc_ros.inference.ort_backend', 'OrtBackend', 'pip install onnxruntime'),
    'tensorrt': ('hndesc_ros.inference.tensorrt_backend', 'TensorRTBackend',
                 'NVIDIA TensorRT (pip install tensorrt) and a CUDA GPU'),
}


def resolve_backend(name: str, device: str = 'cpu') -> str:
    """Turn 'auto' into a concrete backend: torch on CUDA devices, else onnxruntime."""
    if name != 'auto':
        return name
    return 'torch' if device.startswith('cuda') else 'onnxruntime'


def create_backend(name: str, weights: str, device: str = 'cpu', fp16: bool = False,
                   num_threads: int = 2) -> Backend:
    """Instantiate backend ``name`` ('torch', 'onnxruntime', 'tensorrt' or 'auto')."""
    name = resolve_backend(name, device)
    if name not in REGISTRY:
        raise ConfigError(f'unknown backend {name!r}; choose one of auto, {", ".join(REGISTRY)}')
    module, cls, install = REGISTRY[name]
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise BackendUnavailable(f'{name} backend unavailable ({exc}); install: {install}') \
            from None
    if name == 'torch':
        return getattr(mod, cls)(weights, device=device, fp16=fp16, num_threads=num_threads)
    if name == 'onnxruntime':
        return getattr(mod, cls)(weights, num_threads=num_threads)
    return getattr(mod, cls)(weights, fp16=fp16)


__all__ = ['Backend', 'REGISTRY', 'create_backend', 'resolve_backend']
