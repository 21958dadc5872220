"""The one contract every inference backend implements."""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np

from hndesc_ros.models.variants import ModelConfig


class Backend:
    """Runs the descriptor network on one image.

    ``run`` takes ``image`` (1, C, H, W) float32 in [0, 1] with H, W multiples of 8 and
    optionally ``sift`` (N, 128) float32 unit descriptors (residual variants), and returns
    numpy arrays: ``dense`` (1, Dc, H/8, W/8), ``refined`` (N, Dr) when sift was given and the
    variant uses it, ``scores`` (1, H, W) when ``with_scores`` and the model has a detector.
    """

    name = 'base'
    model_cfg: ModelConfig
    min_input = (8, 8)  # smallest (H, W) the graph accepts (TensorRT: its profile's minimum)

    def run(self, image: np.ndarray, sift: Optional[np.ndarray] = None,
            with_scores: bool = False) -> Dict[str, np.ndarray]:
        raise NotImplementedError

    def refine(self, sift: np.ndarray) -> np.ndarray:
        """``f`` alone: (N, 128) unit SIFT -> (N, refine_dim), for keypoints chosen after the
        network ran (learned keypoints). Static graphs get the smallest image they accept."""
        if not len(sift):
            return np.zeros((0, self.model_cfg.refine_dim), np.float32)
        probe = np.zeros((1, self.model_cfg.in_channels, *self.min_input), np.float32)
        return self.run(probe, sift)['refined']

    @staticmethod
    def finish(outputs: Dict, sift, with_scores: bool) -> Dict:
        """Trim a static graph's outputs to the contract: graphs with a ``sift`` input always
        run ``f`` (on one dummy row when there are no keypoints), so ``refined`` is dropped when
        no sift was given and emptied when it had no rows; ``scores`` only on request."""
        if 'refined' in outputs:
            if sift is None:
                del outputs['refined']
            elif not len(sift):
                outputs['refined'] = outputs['refined'][:0]
        if not with_scores:
            outputs.pop('scores', None)
        return outputs
