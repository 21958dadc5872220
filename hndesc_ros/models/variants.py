"""The model variants by name and the files shipped for them; no torch here.

The runtime (ONNX Runtime on the CPU, the nodes, the CLI) needs a variant's architecture and
its shipped files without importing torch; the networks themselves are in the other modules.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Tuple

from hndesc_ros.errors import ConfigError

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / 'weights'
WEIGHT_FORMATS = ('pt', 'onnx', 'int8.onnx')


@dataclass
class ModelConfig:
    """Architecture of one variant (stored inside every checkpoint and ONNX file)."""

    variant: str = 'residual'
    in_channels: int = 1
    channels: Tuple[int, ...] = (64, 64, 128, 128)
    head_channels: int = 256
    cnn_dim: int = 128                 # d_s, channels of h's descriptor map
    use_sift: bool = True              # residual (True) or CNN-only (False)
    refine_hidden: Tuple[int, ...] = (256, 256)
    refine_dim: int = 128
    detector: bool = True
    batchnorm: bool = True
    extra: Dict = field(default_factory=dict)

    @property
    def descriptor_dim(self) -> int:
        return self.cnn_dim + (self.refine_dim if self.use_sift else 0)

    @classmethod
    def from_dict(cls, d: Dict) -> 'ModelConfig':
        """From a stored dict (JSON or checkpoint): lists become tuples again."""
        cfg = cls(**d)
        cfg.channels, cfg.refine_hidden = tuple(cfg.channels), tuple(cfg.refine_hidden)
        return cfg


VARIANTS: Dict[str, ModelConfig] = {
    'residual': ModelConfig('residual'),
    'cnn': ModelConfig('cnn', cnn_dim=256, use_sift=False),
    'residual-small': ModelConfig('residual-small', channels=(32, 32, 64, 64), head_channels=128,
                                  cnn_dim=64, refine_hidden=(128, 128), refine_dim=64),
}


def variant_config(name: str, **overrides) -> ModelConfig:
    """Return a fresh ModelConfig for a registered variant name."""
    if name not in VARIANTS:
        raise ConfigError(f'unknown model variant {name!r}; choose one of {", ".join(VARIANTS)}')
    return ModelConfig.from_dict({**asdict(VARIANTS[name]), **overrides})


def shipped_weights(variant: str = 'residual', fmt: str = 'pt') -> Path:
    """Path of the model this package ships for ``variant`` (trained by training/train.py):
    the checkpoint (``fmt='pt'``, for torch), its ONNX export (``'onnx'``, for the runtime,
    written by training/export.py and checked against the checkpoint by the tests) or the
    export's int8 twin (``'int8.onnx'``, ONNX Runtime on the CPU; not every variant has one)."""
    if fmt not in WEIGHT_FORMATS:
        raise ConfigError(f'unknown weights format {fmt!r}; choose one of '
                          f'{", ".join(WEIGHT_FORMATS)}')
    return WEIGHTS_DIR / f'hndesc_{variant}.{fmt}'
