"""Conversions between ROS 2 messages and the library's types (no cv_bridge: it breaks on
numpy 2 from PyPI). Message layout of ``features/matches`` (sensor_msgs/PointCloud2), one point
per tracked left keypoint, little endian, 20 bytes a point:

    offset 0  track_id  INT32    persistent track id
    offset 4  u         FLOAT32  left image column (px)
    offset 8  v         FLOAT32  left image row (px)
    offset 12 u_right   FLOAT32  right image column (px), NaN when unmatched in the right image
    offset 16 score     FLOAT32  keypoint score

The header is the left image's header (stamp and frame id).
"""
from __future__ import annotations

import numpy as np

from hndesc_ros.errors import CalibrationError, ImageError
from hndesc_ros.types import StereoCalib, from_quat, make_T

MATCH_FIELDS = (('track_id', 0, 5), ('u', 4, 7), ('v', 8, 7), ('u_right', 12, 7),
                ('score', 16, 7))   # (name, offset, PointField datatype: 5 INT32, 7 FLOAT32)
MATCH_DTYPE = np.dtype([('track_id', '<i4'), ('u', '<f4'), ('v', '<f4'), ('u_right', '<f4'),
                        ('score', '<f4')])
SUPPORTED_ENCODINGS = ('mono8', '8UC1', 'bgr8', 'rgb8', '8UC3')


def stamp_to_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def image_to_numpy(msg) -> np.ndarray:
    """sensor_msgs/Image -> (H, W) uint8 or (H, W, 3) BGR uint8; ImageError otherwise."""
    enc = msg.encoding
    if enc not in SUPPORTED_ENCODINGS:
        raise ImageError(f'unsupported image encoding {enc!r} (use mono8, bgr8 or rgb8)')
    channels = 1 if enc in ('mono8', '8UC1') else 3
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    data = np.frombuffer(bytes(msg.data), np.uint8)
    if h == 0 or w == 0 or step < w * channels or len(data) < h * step:
        raise ImageError(f'image {w}x{h} ({enc}) has inconsistent size/step/data '
                         f'({step} B/row, {len(data)} B)')
    img = data[:h * step].reshape(h, step)[:, :w * channels]
    img = img.reshape(h, w, channels) if channels == 3 else img
    if enc == 'rgb8':
        img = img[:, :, ::-1]
    return np.ascontiguousarray(img)


def numpy_to_image_fields(img: np.ndarray) -> dict:
    """(H, W) or (H, W, 3) BGR uint8 -> dict of Image fields (encoding, height, ...)."""
    enc = 'mono8' if img.ndim == 2 else 'bgr8'
    img = np.ascontiguousarray(img)
    return {'encoding': enc, 'height': img.shape[0], 'width': img.shape[1],
            'step': img.strides[0], 'is_bigendian': 0, 'data': img.tobytes()}


def camera_info_projection(msg) -> np.ndarray:
    """Validate a rectified CameraInfo and return its (3, 4) P; CalibrationError otherwise."""
    P = np.asarray(msg.p, float).reshape(3, 4)
    if not np.all(np.isfinite(P)) or P[0, 0] <= 0 or P[1, 1] <= 0:
        raise CalibrationError('camera_info has an empty or invalid projection matrix P')
    R = np.asarray(msg.r, float).reshape(3, 3)
    if np.any(R) and not np.allclose(R, np.eye(3), atol=1e-6):
        raise CalibrationError('camera_info R is not identity: images are not rectified '
                               '(run image_proc / stereo_image_proc first)')
    if np.any(np.asarray(msg.d, float)):
        raise CalibrationError('camera_info has distortion coefficients: expected rectified '
                               'images (left/image_rect) with zero distortion')
    return P


def calib_from_camera_info(left, right=None) -> StereoCalib:
    """Rectified StereoCalib from left (and right) CameraInfo; baseline from right P[0, 3]."""
    P0 = camera_info_projection(left)
    P1 = camera_info_projection(right) if right is not None else None
    calib = StereoCalib.from_projections(P0, P1, int(left.width), int(left.height))
    if right is not None and calib.baseline <= 0:
        raise CalibrationError('right camera_info P[0, 3] gives no positive baseline')
    return calib


def observations_to_array(obs) -> np.ndarray:
    """Observations -> structured array with MATCH_DTYPE."""
    arr = np.zeros(len(obs), MATCH_DTYPE)
    arr['track_id'], arr['u'], arr['v'] = obs.track_ids, obs.uv[:, 0], obs.uv[:, 1]
    arr['u_right'], arr['score'] = obs.u_right, obs.scores
    return arr


def array_to_observations(arr: np.ndarray, stamp: float, index: int = 0):
    """Structured array -> Observations."""
    from hndesc_ros.vo.tracker import Observations
    return Observations(stamp, index, arr['track_id'].astype(np.int64),
                        np.stack([arr['u'], arr['v']], 1).astype(np.float32),
                        arr['u_right'].astype(np.float32), arr['score'].astype(np.float32))


def check_match_layout(msg) -> None:
    """Raise ValueError unless a PointCloud2 has exactly the documented field layout."""
    got = tuple((f.name, int(f.offset), int(f.datatype)) for f in msg.fields)
    if got != MATCH_FIELDS or int(msg.point_step) != MATCH_DTYPE.itemsize or msg.is_bigendian:
        raise ValueError(f'features/matches has an unknown field layout {got}')
    if len(msg.data) != int(msg.point_step) * int(msg.width) * int(msg.height):
        raise ValueError('features/matches data size does not match width * point_step')


def transform_from_xyzq(v) -> np.ndarray:
    """(x y z qx qy qz qw) -> 4x4."""
    return make_T(from_quat(v[3:7]), v[:3])
