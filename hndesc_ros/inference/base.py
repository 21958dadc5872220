"""The one contract every inference backend implements."""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np

from hndesc_ros.models.fusion import ModelConfig


class Backend:
    """Runs the descriptor network on one image.

    ``run`` takes ``image`` (1, C, H, W) float32 in [0, 1] with H, W multiples of 8 and
    optionally ``sift`` (N, 128) float32 unit descriptors (residual variants), and returns
    numpy arrays: ``dense`` (1, Dc, H/8, W/8), ``refined`` (N, Dr) when sift was given and the
    variant uses it, ``scores`` (1, H, W) when ``with_scores`` and the model has a detector.
    """

    name = 'base'
    model_cfg: ModelConfig

    def run(self, image: np.ndarray, sift: Optional[np.ndarray] = None,
            with_scores: bool = False) -> Dict[str, np.ndarray]:
        raise NotImplementedError

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
