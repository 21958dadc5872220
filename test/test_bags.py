"""KITTI -> ROS 2 bag (MCAP and sqlite3) read back with rosbags."""
import numpy as np
import pytest

from hndesc_ros.datasets.bags import TOPICS, bag_info, read_bag, sequence_to_bag
from hndesc_ros.datasets.kitti import KittiSequence


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_kitti2bag_roundtrip(tmp_path, kitti06, storage):
    from rosbags.typesys import Stores, get_typestore
    seq = KittiSequence(kitti06, count=3)
    bag = sequence_to_bag(seq, tmp_path / 'bag', storage)
    assert (bag / 'metadata.yaml').exists()   # what `ros2 bag info` reads
    info = bag_info(bag)
    assert {t for t, _ in TOPICS.values()} == set(info['topics'])
    assert all(n == 3 for _, n in info['topics'].values())
    ts = get_typestore(Stores.ROS2_KILTED)
    msgs = list(read_bag(bag, {'/left/image_rect', '/right/camera_info', '/ground_truth/odom'}))
    img = ts.deserialize_cdr(msgs[0][3], msgs[0][1])
    assert (img.width, img.height, img.encoding) == (1226, 370, 'mono8')
    assert np.array_equal(np.asarray(img.data).reshape(370, 1226), seq.frame(0).left)
    info_r = next(ts.deserialize_cdr(raw, mt) for t, mt, _, raw in msgs
                  if t == '/right/camera_info')
    assert info_r.p[3] == pytest.approx(-seq.calib.fx * seq.calib.baseline)
    stamps = [ns for t, _, ns, _ in msgs if t == '/left/image_rect']
    assert np.allclose(np.diff(stamps) / 1e9, np.diff(seq.times[:3]), atol=1e-6)


def test_existing_bag_is_not_overwritten(tmp_path, kitti06):
    from hndesc_ros.errors import HndescError
    (tmp_path / 'bag').mkdir()
    with pytest.raises(HndescError, match='exists'):
        sequence_to_bag(KittiSequence(kitti06, count=1), tmp_path / 'bag')
