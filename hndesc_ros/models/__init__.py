"""The networks (one per file), checkpoint I/O and the variants by name.

``variants`` (architectures and shipped files) imports no torch, so the ONNX Runtime path runs
without it; the torch names below load on first use (PEP 562), so importing this package stays
light.
"""
from importlib import import_module

from hndesc_ros.models.variants import VARIANTS, ModelConfig, shipped_weights, variant_config

_TORCH = {'HNDescNet': 'fusion', 'build_model': 'fusion', 'fuse': 'fusion',
          'load_checkpoint': 'checkpoint', 'load_superpoint_into': 'checkpoint',
          'save_checkpoint': 'checkpoint'}


def __getattr__(name: str):
    if name in _TORCH:
        return getattr(import_module(f'hndesc_ros.models.{_TORCH[name]}'), name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


__all__ = ['VARIANTS', 'ModelConfig', 'shipped_weights', 'variant_config', *_TORCH]
