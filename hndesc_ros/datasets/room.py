"""A synthetic indoor stereo sequence with exact ground truth: a hand-held stereo camera walking
through a room whose walls, floor and ceiling carry photographs, written as a KITTI-layout
sequence (``sequences/room/image_0|1``, ``calib.txt``, ``times.txt``, ``poses/room.txt``).

The shared data hold no indoor stereo rig, and an indoor rig differs from KITTI where the
back end feels it: a short baseline (0.11 m), a small image (752 x 480), 20 Hz, slow motion
that keeps the same landmarks for many keyframes, and surfaces 1-4 m away. The images are ray
cast exactly (an axis-aligned box, bilinear texture lookup, 2 x 2 supersampling, Gaussian
sensor noise), so the rig is perfectly rectified (a disparity offset of 0 px) and the ground
truth is exact. The textures are real photographs, so the features are those of natural
images; their photographic content is flat, so this checks geometry and the back end, not
the descriptor's invariances.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence, Tuple

import cv2
import numpy as np

from hndesc_ros.datasets.kitti import write_sequence_files
from hndesc_ros.errors import HndescError
from hndesc_ros.se3 import make_T
from hndesc_ros.types import StereoCalib


@dataclass
class RoomRig:
    """The camera, its motion and the room (metres, pixels, seconds; camera axes x right,
    y down, z forward; the room's axes are the first camera's, up to its height and turn)."""

    width: int = 752
    height: int = 480
    focal: float = 458.0
    baseline: float = 0.11
    rate_hz: float = 20.0
    room_lo: Tuple[float, float, float] = (-3.0, -1.5, -3.0)
    room_hi: Tuple[float, float, float] = (3.0, 1.3, 4.0)
    texels_per_metre: float = 220.0
    noise_sigma: float = 2.0


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """(3, 3) camera-to-room rotation: yaw about y (down), then pitch about x, roll about z."""
    cy, sy, cp, sp, cr, sr = (np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch),
                              np.cos(roll), np.sin(roll))
    Ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    Rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    Rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return Ry @ Rx @ Rz


def hand_held_path(frames: int, rate_hz: float) -> np.ndarray:
    """(N, 4, 4) camera-to-room poses of a walk: a figure of eight about 1.8 m wide and
    1.5 m deep at about 0.45 m/s, with a step's bob and sway, looking around by up to 35 deg
    of yaw, 7 deg of pitch and 3 deg of roll (a person carrying the rig through a room)."""
    t = np.arange(frames) / rate_hz
    w = 2 * np.pi / 14.0                     # one figure of eight in 14 s
    x = 0.9 * np.sin(w * t)
    z = 0.75 * np.sin(2 * w * t) + 0.15 * t / max(t[-1], 1e-9)
    y = 0.02 * np.sin(2 * np.pi * 1.8 * t) + 0.01 * np.sin(2 * np.pi * 0.7 * t)
    yaw = 0.6 * np.sin(0.9 * w * t + 0.3)
    pitch = 0.12 * np.sin(1.7 * w * t) + 0.01 * np.sin(2 * np.pi * 1.8 * t + 1.0)
    roll = 0.05 * np.sin(1.3 * w * t + 0.5)
    return np.stack([make_T(_rotation(a, b, c), np.array([px, py, pz]))
                     for a, b, c, px, py, pz in zip(yaw, pitch, roll, x, y, z)])


def wall_textures(images: Sequence[Path], rig: RoomRig, seed: int) -> List[np.ndarray]:
    """Six float32 textures (the walls at x lo and hi, the ceiling and the floor, the walls
    at z lo and hi), each a photograph resized to its face at ``rig.texels_per_metre``, with
    a faint fine-grained pattern (a surface's own grain, so that the upsampled photograph is
    not smooth at the texel scale)."""
    if not images:
        raise HndescError('the synthetic room needs at least one texture image')
    rng = np.random.default_rng(seed)
    lo, hi = np.array(rig.room_lo), np.array(rig.room_hi)
    size = (hi - lo) * rig.texels_per_metre
    # (columns, rows) of each face: x walls span (z, y), floor/ceiling (x, z), z walls (x, y)
    faces = [(size[2], size[1])] * 2 + [(size[0], size[2])] * 2 + [(size[0], size[1])] * 2
    out = []
    for i, (cols, rows) in enumerate(faces):
        image = cv2.imread(str(images[i % len(images)]), cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise HndescError(f'{images[i % len(images)]}: not an image')
        tex = cv2.resize(image, (int(cols), int(rows)), interpolation=cv2.INTER_CUBIC)
        grain = cv2.GaussianBlur(rng.normal(0, 1, tex.shape).astype(np.float32), (0, 0), 1.0)
        out.append(np.clip(tex.astype(np.float32) + 18.0 * grain, 0, 255))
    return out


def render(T_room_cam: np.ndarray, textures: List[np.ndarray], rig: RoomRig) -> np.ndarray:
    """(H, W) float32 image of the room from camera pose ``T_room_cam`` (4, 4): each pixel
    the mean of 2 x 2 rays, each the bilinear texel where it leaves the box."""
    s = 2
    w, h = rig.width * s, rig.height * s
    f, cx, cy = rig.focal * s, (rig.width / 2 - 0.5) * s + 0.5, (rig.height / 2 - 0.5) * s + 0.5
    u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    rays = np.stack([(u - cx) / f, (v - cy) / f, np.ones_like(u)], axis=-1)
    d = rays @ T_room_cam[:3, :3].T                         # (h, w, 3) in the room
    c = T_room_cam[:3, 3]
    lo, hi = np.array(rig.room_lo), np.array(rig.room_hi)
    with np.errstate(divide='ignore'):
        t = (np.where(d > 0, hi, lo) - c) / d
    t[~np.isfinite(t)] = np.inf
    axis = np.argmin(t, axis=-1)
    hit = c + np.take_along_axis(t, axis[..., None], -1) * d
    out = np.zeros((h, w), np.float32)
    coords = {0: (2, 1), 1: (0, 2), 2: (0, 1)}              # texture (column, row) axes
    for a, (ca, ra) in coords.items():
        for side in (0, 1):
            mask = (axis == a) & ((d[..., a] > 0) == bool(side))
            if not mask.any():
                continue
            tex = textures[2 * a + side]
            mx = ((hit[..., ca] - lo[ca]) * rig.texels_per_metre).astype(np.float32)
            my = ((hit[..., ra] - lo[ra]) * rig.texels_per_metre).astype(np.float32)
            sampled = cv2.remap(tex, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            out[mask] = sampled[mask]
    return cv2.resize(out, (rig.width, rig.height), interpolation=cv2.INTER_AREA)


def shared_textures(data_dir: str | Path) -> List[Path]:
    """The photographs the project's benches and tests paper the room with, from the shared
    data folder ``data_dir``: two indoor frames (an office) and four of a building."""
    images = Path(data_dir) / 'images'
    return (sorted((images / 'tum_freiburg').glob('*.png'))[:2]
            + sorted((images / 'sacre_coeur').glob('*.jpg'))[:4])


def write_room(out_dir: str | Path, images: Sequence[Path], frames: int = 200, seed: int = 0,
               rig: RoomRig = RoomRig()) -> Path:
    """Render ``frames`` stereo pairs of the hand-held walk and write them as the KITTI
    sequence ``out_dir/sequences/room`` (ground truth: ``out_dir/poses/room.txt``, the first
    camera's frame as the world); returns the sequence folder."""
    if frames < 2:
        raise HndescError(f'the synthetic room needs at least 2 frames, not {frames}')
    seq = Path(out_dir) / 'sequences' / 'room'
    for sub in ('image_0', 'image_1'):
        (seq / sub).mkdir(parents=True, exist_ok=True)
    textures = wall_textures(images, rig, seed)
    rng = np.random.default_rng(seed + 1)
    path = hand_held_path(frames, rig.rate_hz)
    right = make_T(np.eye(3), np.array([rig.baseline, 0.0, 0.0]))
    for k, T in enumerate(path):
        for sub, pose in (('image_0', T), ('image_1', T @ right)):
            image = render(pose, textures, rig)
            image += rng.normal(0.0, rig.noise_sigma, image.shape).astype(np.float32)
            cv2.imwrite(str(seq / sub / f'{k:06d}.png'),
                        np.clip(np.rint(image), 0, 255).astype(np.uint8))
    calib = StereoCalib(rig.focal, rig.focal, rig.width / 2 - 0.5, rig.height / 2 - 0.5,
                        rig.baseline, rig.width, rig.height)
    write_sequence_files(out_dir, 'room', calib, np.arange(frames) / rig.rate_hz,
                         np.linalg.inv(path[0]) @ path)
    return seq
