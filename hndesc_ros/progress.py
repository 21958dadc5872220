"""The one progress bar of the package: tqdm on stderr, so stdout keeps only results."""
from __future__ import annotations

import sys


def progress_bar(total: int, desc: str, unit: str = 'frame', enabled: bool = True,
                 iterable=None):
    """A tqdm bar on stderr (over ``iterable`` if given), a no-op when not ``enabled``."""
    from tqdm import tqdm
    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr,
                dynamic_ncols=True, disable=not enabled)
