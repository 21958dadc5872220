"""Shared fixtures: real data from ../shared/data (tests fail, not skip, when it is absent)."""
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parent.parent.parent / 'shared' / 'data'


def shared_path(*parts) -> Path:
    """Path under ../shared/data; fails the test with the folder's name when missing."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.fail(f'test data missing: {path} (expected the shared data folder {SHARED})')
    return path


@pytest.fixture(scope='session')
def kitti06():
    return shared_path('kitti', 'sequences', '06')


@pytest.fixture(scope='session')
def kitti_frame(kitti06):
    from hndesc_ros.features import read_image
    return read_image(kitti06 / 'image_0' / '000000.png')


@pytest.fixture(scope='session')
def churchill():
    return shared_path('hpatches', 'v_churchill')


@pytest.fixture(autouse=True, scope='session')
def _cache(tmp_path_factory):
    """Derived files (ONNX exports) go to a per-session cache, not the user's home."""
    import os
    os.environ.setdefault('HNDESC_CACHE', str(tmp_path_factory.mktemp('cache')))
