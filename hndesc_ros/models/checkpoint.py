"""Checkpoint I/O: the variant and its config travel with the state dict.

Format (``torch.save`` of a dict): ``{'format': 'hndesc_ros/1', 'model': ModelConfig as dict,
'state_dict': ..., 'meta': {...}}``. Weights may be stored in fp16 to keep files small; they are
loaded back as fp32. A user's SuperPoint checkpoint can be loaded into ``h`` (never shipped).
"""
from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Dict, Optional, Tuple

import torch

from hndesc_ros.errors import ConfigError, WeightsError, describe
from hndesc_ros.models.fusion import HNDescNet, build_model
from hndesc_ros.models.variants import ModelConfig, variant_config

LOG = logging.getLogger(__name__)
FORMAT = 'hndesc_ros/1'


def save_checkpoint(path: str | Path, model: HNDescNet, meta: Optional[Dict] = None,
                    half: bool = False, extra: Optional[Dict] = None) -> Path:
    """Write ``model`` with its config (and optional training state in ``extra``)."""
    sd = {k: (v.half() if half and v.is_floating_point() else v).cpu()
          for k, v in model.state_dict().items()}
    blob = {'format': FORMAT, 'model': asdict(model.cfg), 'state_dict': sd, 'meta': meta or {}}
    blob.update(extra or {})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + '.tmp')
    torch.save(blob, tmp)
    tmp.replace(path)  # atomic: an interrupted save never leaves a broken checkpoint
    return path


def _torch_load(path: Path, map_location: str = 'cpu'):
    """torch.load whose every failure is one WeightsError line naming the file."""
    if not path.is_file():
        raise WeightsError(f'weights file not found: {path}')
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # pickle, zip and torch errors alike: the file is not usable
        raise WeightsError(f'{path}: not a readable torch checkpoint ({describe(exc)})') \
            from None


def read_checkpoint(path: str | Path, map_location: str = 'cpu') -> Dict:
    """The saved dict of a hndesc_ros checkpoint, checked; every problem is a WeightsError
    naming the file (missing, unreadable, not a checkpoint, not a hndesc_ros one)."""
    path = Path(path)
    blob = _torch_load(path, map_location)
    if not isinstance(blob, dict) or blob.get('format') != FORMAT:
        raise WeightsError(f'{path} is not a hndesc_ros checkpoint (for SuperPoint weights use '
                           'load_superpoint_into)')
    return blob


def load_checkpoint(path: str | Path, map_location: str = 'cpu') -> Tuple[HNDescNet, Dict]:
    """Load a hndesc_ros checkpoint -> (model in eval mode, fp32; the whole saved dict)."""
    blob = read_checkpoint(path, map_location)
    try:
        model = build_model(ModelConfig.from_dict(blob['model']))
        model.load_state_dict({k: v.float() if v.is_floating_point() else v
                               for k, v in blob['state_dict'].items()})
    except (KeyError, TypeError, RuntimeError) as exc:
        raise WeightsError(f'{path}: checkpoint does not fit its model '
                           f'({describe(exc)})') from None
    return model.eval(), blob


_SP_PREFIXES = ('module.', 'net.', 'model.', 'superpoint.', 'backbone.', 'encoder.', 'h.')


def superpoint_key_map(keys) -> Dict[str, str]:
    """Map SuperPoint checkpoint keys (``conv1a.weight``, ``module.convDa.bias``...) to ``h``."""
    out = {}
    for key in keys:
        name = key
        changed = True
        while changed:
            changed = False
            for p in _SP_PREFIXES:
                if name.startswith(p):
                    name, changed = name[len(p):], True
        if name.split('.')[0] in ('conv1a', 'conv1b', 'conv2a', 'conv2b', 'conv3a', 'conv3b',
                                  'conv4a', 'conv4b', 'convDa', 'convDb', 'convPa', 'convPb'):
            out[key] = 'h.' + name
    return out


def load_superpoint_into(path: str | Path, variant: str = 'cnn') -> HNDescNet:
    """Build ``variant`` and load a user's SuperPoint weights into ``h``.

    The original SuperPoint has a 256-D descriptor head, so the ``cnn`` variant takes all of it;
    for ``residual`` the head does not fit and only the encoder and detector are loaded.
    """
    sd = _torch_load(Path(path))
    if isinstance(sd, dict) and 'state_dict' in sd and isinstance(sd['state_dict'], dict):
        sd = sd['state_dict']
    model = build_model(variant_config(variant))
    own = model.state_dict()
    mapping = superpoint_key_map(sd.keys())
    loaded = {}
    for src, dst in mapping.items():
        if dst not in own:  # our convs with BatchNorm are Sequential(conv, bn)
            head, tail = dst.rsplit('.', 1)
            dst = f'{head}.0.{tail}'
        if dst in own and own[dst].shape == sd[src].shape:
            loaded[dst] = sd[src].float()
    if not any(k.startswith('h.conv1a') for k in loaded):
        raise ConfigError(f'{path}: no SuperPoint encoder weights found')
    missing = sorted(set(k for k in own if k.startswith('h.')) - set(loaded))
    if missing:
        LOG.warning('SuperPoint checkpoint did not provide %d tensors (e.g. %s)', len(missing),
                    missing[0])
    model.load_state_dict(loaded, strict=False)
    return model.eval()
