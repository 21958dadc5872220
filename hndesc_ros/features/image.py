"""Image loading and validation: every bad image becomes one clear ImageError."""
from __future__ import annotations

from pathlib import Path
from typing import Tuple

import cv2
import numpy as np

from hndesc_ros.errors import ImageError

MIN_SIZE = 16
MAX_DENOISE_BLUR_PX = 3.0
_NOISE_MASK = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)


def check_image(image: np.ndarray, name: str = 'image') -> np.ndarray:
    """Validate an image and return it as (H, W) uint8 gray or (H, W, 3) uint8 BGR.

    Accepts uint8 gray, BGR, or float in [0, 1]; rejects empty, 16-bit, 4-channel, NaN and
    images smaller than 16 px with an :class:`ImageError` naming the problem.
    """
    if not isinstance(image, np.ndarray):
        raise ImageError(f'{name}: expected a numpy array, got {type(image).__name__}')
    if image.size == 0:
        raise ImageError(f'{name}: empty image')
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        shape = 'x'.join(map(str, image.shape))
        raise ImageError(f'{name}: expected gray (H, W) or 3-channel (H, W, 3), got {shape}')
    if image.dtype == np.uint16:
        raise ImageError(f'{name}: 16-bit images are not supported; convert to 8-bit')
    if image.dtype in (np.float32, np.float64):
        if not np.all(np.isfinite(image)):
            raise ImageError(f'{name}: contains NaN or inf')
        if image.min() < 0 or image.max() > 1:
            raise ImageError(f'{name}: float images must lie in [0, 1]')
        image = (image * 255 + 0.5).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ImageError(f'{name}: unsupported dtype {image.dtype}; expected uint8')
    h, w = image.shape[:2]
    if h < MIN_SIZE or w < MIN_SIZE:
        raise ImageError(f'{name}: {w}x{h} px is smaller than {MIN_SIZE} px')
    return np.ascontiguousarray(image)


def budget_scale(width: int, height: int, pixels: int) -> float:
    """Scale at which a ``width`` x ``height`` image has about ``pixels`` pixels, at most 1
    (the pixel budgets of SIFT and of block matching)."""
    return float(min(1.0, np.sqrt(pixels / float(width * height))))


def resize_by(gray: np.ndarray, scale: float) -> Tuple[np.ndarray, np.ndarray]:
    """``gray`` resized by ``scale`` (area averaging) and its (2,) x and y scales relative to
    the input (exact: a size rounds to whole pixels); at scale 1 the input itself."""
    if scale == 1.0:
        return gray, np.ones(2)
    h, w = gray.shape[:2]
    size = (max(int(round(w * scale)), 1), max(int(round(h * scale)), 1))
    return (cv2.resize(gray, size, interpolation=cv2.INTER_AREA),
            np.array([size[0] / w, size[1] / h]))


def to_gray(image: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 3) BGR uint8 -> (H, W) uint8."""
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def stretch_levels(gray: np.ndarray, below: float = 180.0, blank: float = 16.0,
                   low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """The 256-entry lookup table that restores the contrast of a dim or flat (H, W) uint8
    image: when its ``low``..``high`` percentiles (sampled every 4th pixel) span fewer than
    ``below`` grey levels (70 % of the range: a well exposed image spans more), they are
    mapped onto 0..255; otherwise the table is the identity and the image stays as it is, and
    so does a nearly blank image (under ``blank`` levels: a covered lens or a black frame has
    no scene to recover, only noise to amplify).
    This undoes an exposure that dims the scene (dusk, a tunnel, auto-exposure steps), so
    that absolute thresholds (SIFT's contrast) see the same scene as in good light. Apply it
    with ``cv2.LUT`` (the same table for both images of a pair)."""
    lo, hi = np.percentile(gray[::4, ::4], (low, high))
    if not blank <= hi - lo < below:
        return np.arange(256, dtype=np.uint8)
    lut = (np.arange(256, dtype=np.float32) - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(lut), 0, 255).astype(np.uint8)


def noise_sigma(gray: np.ndarray) -> float:
    """Standard deviation (grey levels) of the sensor noise of a (H, W) uint8 image.

    Immerkaer's estimator (1996): the 3x3 mask [[1, -2, 1], [-2, 4, -2], [1, -2, 1]] is the
    difference of two Laplacians, which cancels smooth image structure and keeps the noise;
    the mean absolute response times sqrt(pi / 2) / 6 is sigma for Gaussian noise. Edges and
    fine texture read as a little noise too: a well exposed KITTI frame gives 2-3 levels.
    """
    if gray.shape[0] < 3 or gray.shape[1] < 3:
        return 0.0
    response = cv2.filter2D(gray, cv2.CV_16S, _NOISE_MASK)[1:-1, 1:-1]
    return float(np.sqrt(np.pi / 2) / 6 * np.abs(response).mean())


def suppress_noise(images, max_noise: float):
    """The images of one exposure (a pair, or one image; uint8), blurred when the first one's
    :func:`noise_sigma` exceeds ``max_noise`` grey levels (``features.max_noise``; 0: never).

    A Gaussian of sigma s (px) divides white noise by 2 sqrt(pi) s, so s = noise /
    (2 sqrt(pi) max_noise) brings it down to ``max_noise`` (at most 3 px). This is what a dark
    image needs after :func:`stretch_levels`: the stretch multiplies the noise with the scene
    (5x in the ``dark`` variant), and SIFT would otherwise fire on noise and place real
    keypoints less precisely. A clean image is returned as it is (the same objects); the same
    blur goes to every image, so stereo compares like with like. None entries stay None."""
    if max_noise <= 0 or images[0] is None:
        return images
    sigma = noise_sigma(to_gray(images[0]))
    if sigma <= max_noise:
        return images
    blur = min(sigma / (2 * np.sqrt(np.pi) * max_noise), MAX_DENOISE_BLUR_PX)
    return [None if im is None else cv2.GaussianBlur(im, (0, 0), blur) for im in images]


def normalise_light(images, method: str):
    """The images of one exposure (a pair, or one image; validated uint8, gray or BGR) under
    ``method`` (``features.light``): ``none``; ``stretch`` (:func:`stretch_levels` of the
    first image's gray, applied to every channel of all of them: a dim image gets its
    contrast back; a well exposed one is returned as it is, the same object); ``clahe``
    (contrast-limited adaptive histogram equalisation of the gray image, 8x8 tiles whatever
    its size, clip limit 2). None entries stay None."""
    if method == 'none':
        return images
    if method == 'stretch':
        lut = stretch_levels(to_gray(images[0]))
        if np.array_equal(lut, np.arange(256)):
            return images
        return [None if im is None else cv2.LUT(im, lut) for im in images]
    clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))
    return [None if im is None else clahe.apply(to_gray(im)) for im in images]


def read_image(path: str | Path, gray: bool = False) -> np.ndarray:
    """Read an image file (gray or BGR, uint8) and validate it; raises ImageError."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f'{path}: no such file')
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise ImageError(f'{path}: not a readable image')
    image = check_image(raw, str(path))
    return to_gray(image) if gray else image
