"""ROS 2 bags without rosbag2: KITTI -> bag (rosbags), and a reader for replay.

A KITTI bag holds, per frame: ``/left/image_rect`` and ``/right/image_rect`` (mono8, or bgr8
for colour), ``/left/camera_info`` and ``/right/camera_info`` (rectified: D = 0, R = I, P from
calib.txt), ``/ground_truth/odom`` (nav_msgs/Odometry, camera pose in the first camera frame)
and ``/clock``. Storage is MCAP by default, sqlite3 on request; ``ros2 bag info`` reads both.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, Optional, Tuple

import numpy as np

from hndesc_ros.config import BAG_STORAGES
from hndesc_ros.datasets.poses import write_tum
from hndesc_ros.errors import HndescError, describe
from hndesc_ros.progress import progress_bar
from hndesc_ros.se3 import to_quat

TOPICS = {
    'left_image': ('/left/image_rect', 'sensor_msgs/msg/Image'),
    'right_image': ('/right/image_rect', 'sensor_msgs/msg/Image'),
    'left_info': ('/left/camera_info', 'sensor_msgs/msg/CameraInfo'),
    'right_info': ('/right/camera_info', 'sensor_msgs/msg/CameraInfo'),
    'gt': ('/ground_truth/odom', 'nav_msgs/msg/Odometry'),
    'clock': ('/clock', 'rosgraph_msgs/msg/Clock'),
}


def _typestore():
    from rosbags.typesys import Stores, get_typestore
    return get_typestore(Stores.ROS2_KILTED)


def sequence_to_bag(seq, out: str | Path, storage: str = 'mcap', start_ns: int = 0,
                    frame_prefix: str = '', progress: bool = False) -> Path:
    """Write a stereo sequence (KittiSequence or SyntheticSequence) as a ROS 2 bag.

    Args:
        seq: sequence with ``calib``, ``frame(k)``, ``times``, ``gt_relative()``.
        out: bag folder (must not exist).
        storage: 'mcap' or 'sqlite3'.
        progress: a progress bar on stderr.
        start_ns: stamp of frame 0 is ``start_ns + times[0]``; 0 means 1 s (a 0 stamp means
            "no time" to many ROS tools), so KITTI frame k is stamped 1 s + times[k].
    Returns:
        The bag folder. The ground truth (if the sequence has it) is written with the same
        stamps to :func:`gt_tum_path` (TUM), ready for ``hndesc-vo eval-traj --format tum``.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer
    out = Path(out)
    if out.exists():
        raise HndescError(f'{out} exists; choose a new bag path')
    if storage not in BAG_STORAGES:
        raise HndescError(f'storage must be {" or ".join(BAG_STORAGES)}, got {storage!r}')
    ts = _typestore()
    T = ts.types
    Time, Header = T['builtin_interfaces/msg/Time'], T['std_msgs/msg/Header']
    Image, Info = T['sensor_msgs/msg/Image'], T['sensor_msgs/msg/CameraInfo']
    Roi = T['sensor_msgs/msg/RegionOfInterest']
    Odom, Clock = T['nav_msgs/msg/Odometry'], T['rosgraph_msgs/msg/Clock']
    G = {n: T[f'geometry_msgs/msg/{n}'] for n in ('PoseWithCovariance', 'Pose', 'Point',
                                                  'Quaternion', 'TwistWithCovariance',
                                                  'Twist', 'Vector3')}
    c = seq.calib
    gt = seq.gt_relative()
    base_ns = start_ns or 1_000_000_000
    if gt is not None:  # the ground truth with the bag's stamps, beside the bag
        write_tum(gt_tum_path(out), (base_ns + np.round(np.asarray(seq.times) * 1e9)) / 1e9, gt)
    plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
    with Writer(out, version=9, storage_plugin=plugin) as writer:
        conns = {k: writer.add_connection(topic, mt, typestore=ts)
                 for k, (topic, mt) in TOPICS.items()}
        for k in progress_bar(len(seq), out.name, enabled=progress, iterable=range(len(seq))):
            fr = seq.frame(k)
            ns = base_ns + int(round(float(seq.times[k]) * 1e9))
            stamp = Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)
            for side, img, tx in (('left', fr.left, 0.0), ('right', fr.right, -c.fx * c.baseline)):
                if img is None:
                    continue
                hdr = Header(stamp=stamp, frame_id=f'{frame_prefix}{side}_camera_optical')
                enc, ch = ('mono8', 1) if img.ndim == 2 else ('bgr8', 3)
                msg = Image(header=hdr, height=img.shape[0], width=img.shape[1], encoding=enc,
                            is_bigendian=0, step=img.shape[1] * ch,
                            data=np.ascontiguousarray(img).reshape(-1))
                writer.write(conns[f'{side}_image'], ns, ts.serialize_cdr(msg, msg.__msgtype__))
                info = Info(header=hdr, height=img.shape[0], width=img.shape[1],
                            distortion_model='plumb_bob', d=np.zeros(5),
                            k=np.array([c.fx, 0, c.cx, 0, c.fy, c.cy, 0, 0, 1.0]),
                            r=np.eye(3).reshape(-1),
                            p=np.array([c.fx, 0, c.cx, tx, 0, c.fy, c.cy, 0, 0, 0, 1.0, 0]),
                            binning_x=0, binning_y=0,
                            roi=Roi(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))
                writer.write(conns[f'{side}_info'], ns, ts.serialize_cdr(info, info.__msgtype__))
            if gt is not None:
                P = gt[k]
                q = to_quat(P[:3, :3])
                pose = G['Pose'](position=G['Point'](x=P[0, 3], y=P[1, 3], z=P[2, 3]),
                                 orientation=G['Quaternion'](x=q[0], y=q[1], z=q[2], w=q[3]))
                zero = G['Vector3'](x=0.0, y=0.0, z=0.0)
                odom = Odom(header=Header(stamp=stamp, frame_id='camera_init'),
                            child_frame_id='camera', pose=G['PoseWithCovariance'](
                                pose=pose, covariance=np.zeros(36)),
                            twist=G['TwistWithCovariance'](
                                twist=G['Twist'](linear=zero, angular=zero),
                                covariance=np.zeros(36)))
                writer.write(conns['gt'], ns, ts.serialize_cdr(odom, odom.__msgtype__))
            writer.write(conns['clock'], ns,
                         ts.serialize_cdr(Clock(clock=stamp), Clock.__msgtype__))
    return out


def gt_tum_path(bag: str | Path) -> Path:
    """Where :func:`sequence_to_bag` writes the ground truth (TUM, the bag's stamps):
    ``<bag>_groundtruth_tum.txt`` beside the bag folder."""
    bag = Path(bag)
    return bag.with_name(f'{bag.name}_groundtruth_tum.txt')


@contextmanager
def _open(path: str | Path):
    """A rosbags Reader whose failures to open are one HndescError line naming the bag."""
    from rosbags.rosbag2 import Reader
    path = Path(path)
    if not path.exists():
        raise HndescError(f'bag not found: {path}')
    try:
        reader = Reader(path)
        reader.open()
    except Exception as exc:  # rosbags' own errors for a broken metadata.yaml or storage
        raise HndescError(f'{path}: not a readable ROS 2 bag, truncated or corrupt ({exc})') \
            from None
    try:
        yield reader
    finally:
        reader.close()


def bag_topics(path: str | Path, topics: Optional[set] = None) -> Dict[str, str]:
    """{topic: msgtype} of a bag (only ``topics`` if given), read from its metadata."""
    with _open(path) as reader:
        return {c.topic: c.msgtype for c in reader.connections
                if topics is None or c.topic in topics}


def read_bag(path: str | Path, topics: Optional[set] = None
             ) -> Iterator[Tuple[str, str, int, bytes]]:
    """Yield (topic, msgtype, timestamp ns, raw CDR bytes) in time order, one at a time.

    Raises:
        HndescError: the bag is missing, or cannot be read further (truncated or corrupt
            storage): the message says after how many messages; those were yielded.
    """
    n = 0
    try:
        with _open(path) as reader:
            conns = [c for c in reader.connections if topics is None or c.topic in topics]
            for conn, ns, raw in reader.messages(connections=conns):
                n += 1
                yield conn.topic, conn.msgtype, ns, bytes(raw)
    except HndescError:
        raise
    except Exception as exc:  # storage plug-ins raise their own types on a truncated file
        raise HndescError(f'{path}: bag unreadable after {n} messages, truncated or corrupt '
                          f'({describe(exc)})') from None


def bag_info(path: str | Path) -> dict:
    """{'duration_s', 'messages', 'topics': {topic: (msgtype, count)}}."""
    with _open(path) as reader:
        return {'duration_s': reader.duration / 1e9, 'messages': reader.message_count,
                'topics': {c.topic: (c.msgtype, c.msgcount) for c in reader.connections}}
