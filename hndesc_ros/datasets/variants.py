"""Variants of a real KITTI-layout sequence, written as a new KITTI-layout sequence: the frames
in another order (a stop: one frame repeated; ping-pong: forwards then backwards), with fresh
sensor noise on every repeated frame, and the ground truth that goes with that order; or with
the light changed (:data:`LIGHT_CHANGES`: the same change for both images of a pair, as one
shutter would see it).

The written folder is a plain KITTI sequence (``sequences/NAME/image_0|1``, ``calib.txt``,
``times.txt`` at the source's frame interval, ``poses/NAME.txt``), so ``hndesc-vo kitti``,
``bench/`` and other programs (ORB-SLAM3's peer tool) read it as they read the source.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

from hndesc_ros.config import LIGHT_CHANGES
from hndesc_ros.datasets.kitti import KITTI_DT, KittiSequence
from hndesc_ros.datasets.poses import write_kitti
from hndesc_ros.errors import HndescError


def stop_order(count: int, at: int, length: int) -> List[int]:
    """Frames 0..count-1 with frame ``at`` shown ``length`` more times (the camera stands
    still there), e.g. ``stop_order(5, 2, 2) == [0, 1, 2, 2, 2, 3, 4]``."""
    if not 0 <= at < count or length < 0:
        raise HndescError(f'a stop at frame {at} of {count} frames, {length} long, is out of '
                          'range')
    return list(range(at + 1)) + [at] * length + list(range(at + 1, count))


def ping_pong_order(count: int) -> List[int]:
    """Frames 0..count-1 and back to 0 (the turning frame once): a drive that reverses."""
    return list(range(count)) + list(range(count - 2, -1, -1))


def add_sensor_noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """(H, W[, C]) uint8 image plus Gaussian noise of ``sigma`` grey levels, rounded, clipped."""
    noisy = image.astype(np.float32) + rng.normal(0.0, sigma, image.shape).astype(np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


#: Photometric changes of a whole pair (``light`` of :func:`write_variant`):
#: ``flicker`` a gain drawn from U(0.45, 1.6) every frame; ``dark`` gamma 1.6, gain 0.18 and
#: sensor noise of 3 grey levels (dusk, a tunnel); ``steps`` a gain of 0.35 on every other
#: block of 5 frames (auto-exposure hunting); ``blur`` a horizontal motion blur over 0.6 % of
#: the image width; ``grain`` the same light with sensor noise of 0.7 grey levels (under the
#: camera's own; invisible): another recording of the same drive, whose draws show how far the
#: clean ATE moves when nothing but the noise does; ``noise`` the same light with sensor noise
#: of 15 grey levels, the level the front end measures on a ``dark`` pair once its contrast is
#: stretched: the dark's noise without the dark. (The names:
#: :data:`hndesc_ros.config.LIGHT_CHANGES`.)


GRAIN_SIGMA = 0.7  # grey levels of the ``grain`` change
NOISE_SIGMA = 15.0  # grey levels of the ``noise`` change


def light_params(kind: str, k: int, rng: np.random.Generator) -> dict:
    """The change of output frame k (one draw per frame, shared by its left and right
    image)."""
    if kind == 'flicker':
        return {'gain': float(rng.uniform(0.45, 1.6))}
    if kind == 'dark':
        return {'gain': 0.18, 'gamma': 1.6, 'noise': 3.0}
    if kind == 'steps':
        return {'gain': 0.35 if (k // 5) % 2 else 1.0}
    if kind == 'blur':
        return {'blur': 0.006}
    if kind == 'grain':
        return {'noise': GRAIN_SIGMA}
    if kind == 'noise':
        return {'noise': NOISE_SIGMA}
    raise HndescError(f'unknown light change {kind!r} (one of {", ".join(LIGHT_CHANGES)})')


def change_light(image: np.ndarray, params: dict, rng: np.random.Generator) -> np.ndarray:
    """(H, W[, C]) uint8 image under the change ``params`` (:func:`light_params`): gamma, then
    gain, then a horizontal motion blur (a length relative to the width), then sensor noise;
    rounded and clipped to uint8."""
    x = image.astype(np.float32) / 255.0
    x = 255.0 * params.get('gain', 1.0) * x ** params.get('gamma', 1.0)
    if params.get('blur'):
        n = max(3, int(round(params['blur'] * image.shape[1])) | 1)
        x = cv2.blur(x, (n, 1))
    if params.get('noise'):
        x = x + rng.normal(0.0, params['noise'], x.shape).astype(np.float32)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


MAX_SCALE = 4.0  # variants: the largest image size factor


def scaled_size(width: int, height: int, scale: float) -> Tuple[int, int]:
    """The (width, height) of an image resized by ``scale`` (rounded, at least 1 px)."""
    return max(1, round(width * scale)), max(1, round(height * scale))


def write_scaled_calib(src: Path, dst: Path, sx: float, sy: float) -> None:
    """Copy a KITTI ``calib.txt``, each projection matrix P scaled for images resized by
    ``sx`` x ``sy`` (new size / old size per axis; pixel centres: x' = (x + 0.5) sx - 0.5,
    so P' = S P)."""
    S = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]])
    lines = []
    for line in Path(src).read_text().splitlines():
        key, _, values = line.partition(':')
        if (sx, sy) != (1, 1) and key.strip().startswith('P') and len(values.split()) == 12:
            P = S @ np.array(values.split(), float).reshape(3, 4)
            line = f'{key}: ' + ' '.join(f'{v:.12e}' for v in P.ravel())
        lines.append(line)
    Path(dst).write_text('\n'.join(lines) + '\n')


def write_variant(seq_dir: str | Path, out_dir: str | Path, order: Sequence[int],
                  name: Optional[str] = None, noise_sigma: float = 2.0, seed: int = 0,
                  poses: Optional[str | Path] = None, light: Optional[str] = None,
                  scale: float = 1.0, right_shift: float = 0.0,
                  blackout: Sequence[int] = ()) -> Path:
    """Write the frames ``order`` of a KITTI sequence as a new KITTI sequence.

    A frame's first appearance is copied byte for byte; every later appearance (a stop, the
    way back of a ping-pong) gets fresh sensor noise (``noise_sigma`` grey levels, drawn
    independently for each image), so that no two frames are identical. Timestamps advance
    at the source's median interval (10 Hz without ``times.txt``).

    Args:
        seq_dir: source ``.../sequences/NN`` (left images, right ones where present).
        out_dir: root of the new dataset; ``out_dir/sequences/NAME`` and
            ``out_dir/poses/NAME.txt`` (when the source has ground truth) are written.
        order: source frame numbers (0-based, within the source's images), in output order.
        name: sequence name (default: the source's).
        noise_sigma: sensor noise on repeated frames, grey levels.
        seed: of the noise.
        poses: the source's ground truth (default: ``seq_dir/../../poses/NN.txt``).
        light: one of :data:`LIGHT_CHANGES` applied to every frame, or None.
        scale: image size factor in (0, MAX_SCALE]: below 1 a smaller camera (area
            interpolation), above 1 a camera of more pixels on the same optics (bicubic; no
            detail is added); the projection matrices in ``calib.txt`` scaled to match.
        right_shift: px the right image is moved to the right (sub-pixel, cubic), as a
            rectification that leaves a disparity offset would; after ``scale``.
        blackout: output frame numbers (positions in ``order``) written as black pairs (a
            covered lens, video lost): the camera moves on unseen, the ground truth with it.
            A black frame draws no light or noise: the draws after it differ from those of
            the same variant without the blackout.
    Returns:
        The new sequence folder.
    """
    src = KittiSequence(seq_dir, poses=poses)
    if not len(order) or min(order) < 0 or max(order) >= len(src):
        raise HndescError(f'frame order out of range: the source has {len(src)} frames')
    black = set(blackout)
    if not black <= set(range(len(order))):
        raise HndescError(f'blackout frames out of range: the variant has {len(order)} frames')
    name = name or src.dir.name
    out = Path(out_dir) / 'sequences' / name
    sides = [src.left_dir] + ([] if src.mono else [src.right_dir])
    for side in sides:
        (out / side.name).mkdir(parents=True, exist_ok=True)
        for old in (out / side.name).glob('*.png'):  # of an earlier, longer variant
            old.unlink()
    if not 0 < scale <= MAX_SCALE:
        raise HndescError(f'scale {scale}: must be in (0, {MAX_SCALE:g}]')
    size = scaled_size(src.calib.width, src.calib.height, scale)
    write_scaled_calib(src.dir / 'calib.txt', out / 'calib.txt', size[0] / src.calib.width,
                       size[1] / src.calib.height)
    if light is not None:
        light_params(light, 0, np.random.default_rng(0))  # an unknown name fails here
    rng = np.random.default_rng(seed)
    seen = set()
    for k, i in enumerate(order):
        dst = f'{k:06d}.png'
        if k in black:
            for side in sides:
                cv2.imwrite(str(out / side.name / dst), np.zeros(size[::-1], np.uint8))
            continue
        repeat = i in seen
        seen.add(i)
        if not repeat and light is None and scale == 1 and not right_shift:
            for side in sides:
                shutil.copyfile(side / src.names[i], out / side.name / dst)
            continue
        params = light_params(light, k, rng) if light else None
        for side in sides:  # each camera's own sensor noise
            image = cv2.imread(str(side / src.names[i]), cv2.IMREAD_UNCHANGED)
            if scale != 1:
                image = cv2.resize(image, size, interpolation=(cv2.INTER_AREA if scale < 1
                                                               else cv2.INTER_CUBIC))
            if right_shift and side == src.right_dir:
                h, w = image.shape[:2]
                image = cv2.warpAffine(image, np.float32([[1, 0, right_shift], [0, 1, 0]]),
                                       (w, h), flags=cv2.INTER_CUBIC,
                                       borderMode=cv2.BORDER_REPLICATE)
            if params is not None:
                image = change_light(image, params, rng)
            if repeat:
                image = add_sensor_noise(image, noise_sigma, rng)
            cv2.imwrite(str(out / side.name / dst), image)
    dt = float(np.median(np.diff(src.times))) if len(src) > 1 else KITTI_DT
    np.savetxt(out / 'times.txt', np.arange(len(order)) * dt, fmt='%.6e')
    if src.gt is not None:
        (Path(out_dir) / 'poses').mkdir(parents=True, exist_ok=True)
        write_kitti(Path(out_dir) / 'poses' / f'{name}.txt', src.gt[list(order)])
    return out
