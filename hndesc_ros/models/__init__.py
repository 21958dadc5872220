"""The networks (one per file) and checkpoint I/O."""
from hndesc_ros.models.checkpoint import (load_checkpoint, load_superpoint_into, save_checkpoint,
                                          shipped_weights)
from hndesc_ros.models.fusion import VARIANTS, HNDescNet, ModelConfig, build_model, fuse

__all__ = ['VARIANTS', 'HNDescNet', 'ModelConfig', 'build_model', 'fuse', 'load_checkpoint',
           'load_superpoint_into', 'save_checkpoint', 'shipped_weights']
