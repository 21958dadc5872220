"""PyTorch backend (CPU or CUDA, optional fp16 autocast on CUDA)."""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np
import torch

from hndesc_ros.inference.base import Backend
from hndesc_ros.models.checkpoint import load_checkpoint


class TorchBackend(Backend):
    """Runs the network with PyTorch.

    Args:
        weights: a hndesc_ros checkpoint (.pt).
        device: 'cpu', 'cuda' or 'cuda:N'.
        fp16: autocast to half precision (CUDA only), channels_last memory format.
        num_threads: torch CPU threads.
    """

    name = 'torch'

    def __init__(self, weights: str, device: str = 'cpu', fp16: bool = False,
                 num_threads: int = 2):
        if device.startswith('cuda') and not torch.cuda.is_available():
            from hndesc_ros.errors import BackendUnavailable
            raise BackendUnavailable('torch backend: CUDA requested but torch.cuda is not '
                                     'available (install a CUDA build of torch or use cpu)')
        if device == 'cpu':
            torch.set_num_threads(num_threads)
        self.device = torch.device(device)
        self.model, _ = load_checkpoint(weights)
        self.model.to(self.device)
        self.model_cfg = self.model.cfg
        self.fp16 = fp16 and self.device.type == 'cuda'
        if self.device.type == 'cuda':
            self.model.to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def run_torch(self, image: torch.Tensor, sift: Optional[torch.Tensor] = None,
                  with_scores: bool = False) -> Dict[str, torch.Tensor]:
        """Same contract as :meth:`run` with tensors on ``self.device`` (no host round trip)."""
        if self.device.type == 'cuda':
            image = image.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.fp16):
            out = self.model(image, sift, with_scores=with_scores)
        return {k: v.float() for k, v in out.items()}

    @torch.inference_mode()
    def refine(self, sift: np.ndarray) -> np.ndarray:
        if not len(sift):
            return np.zeros((0, self.model_cfg.refine_dim), np.float32)
        return self.model.f(torch.from_numpy(sift).to(self.device)).float().cpu().numpy()

    def run(self, image: np.ndarray, sift: Optional[np.ndarray] = None,
            with_scores: bool = False) -> Dict[str, np.ndarray]:
        img = torch.from_numpy(image).to(self.device)
        s = torch.from_numpy(sift).to(self.device) if sift is not None and len(sift) else None
        out = self.run_torch(img, s, with_scores)
        if sift is not None and not len(sift) and self.model_cfg.use_sift:
            out['refined'] = torch.zeros(0, self.model_cfg.refine_dim)
        return {k: v.cpu().numpy() for k, v in out.items()}
