"""Stale Fast DDS shared-memory segments (hndesc_ros.ros.shm): which ones go, which stay."""
import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

from hndesc_ros.ros.shm import remove_stale_segments

SHM = Path('/dev/shm')


def _segment(root: Path, name: str, size: int = 1000, age_s: float = 60.0) -> Path:
    """A segment file and its lock file, both ``age_s`` old."""
    seg, lock = root / name, root / f'{name}_el'
    seg.write_bytes(b'\0' * size)
    lock.touch()
    then = time.time() - age_s
    for f in (seg, lock):
        os.utime(f, (then, then))
    return seg


def test_only_unheld_old_segments_are_removed(tmp_path):
    """Files made here (exact ground truth): a segment whose lock nobody holds goes with its
    lock file; a held one, a young one, one without a lock file and the transport's port
    files stay."""
    dead = _segment(tmp_path, 'fastdds_0123456789abcdef', 5000)
    held = _segment(tmp_path, 'fastdds_fedcba9876543210')
    young = _segment(tmp_path, 'fastdds_00000000000000aa', age_s=0.0)
    bare = tmp_path / 'fastdds_11111111111111bb'
    bare.write_bytes(b'\0')
    port = _segment(tmp_path, 'fastdds_port7411')
    other = _segment(tmp_path, 'fastdds_short')
    fd = os.open(tmp_path / 'fastdds_fedcba9876543210_el', os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a live participant's hold
    try:
        assert remove_stale_segments(tmp_path, min_age_s=10.0) == (1, 5000)
    finally:
        os.close(fd)
    assert not dead.exists() and not Path(f'{dead}_el').exists()
    for kept in (held, young, bare, port, other):
        assert kept.exists()
    # released and old enough: it goes too; the young one waits for its age
    assert remove_stale_segments(tmp_path, min_age_s=10.0) == (1, 1000)
    assert not held.exists() and young.exists()


LEAK = """
import os, sys, time
import rclpy
from std_msgs.msg import String
rclpy.init()
node = rclpy.create_node('shm_probe')
node.create_publisher(String, 'shm_probe', 10)
print('ready', flush=True)
if sys.argv[1] == 'crash':
    os._exit(0)  # no Fast DDS teardown: its segment stays behind
time.sleep(30)
"""


def _new_segments(before: set) -> set:
    return {p.name for p in SHM.glob('fastdds_*_el')} - before


def test_a_crashed_participants_segment_goes_and_a_live_ones_stays():
    """Real Fast DDS: a process that ends without teardown leaves its segment; the clean-up
    removes it, while the segment of a participant that is still running stays."""
    env = {**os.environ, 'HNDESC_SHM_CLEAN': '0'}
    before = {p.name for p in SHM.glob('fastdds_*_el')}
    subprocess.run([sys.executable, '-c', LEAK, 'crash'], env=env, check=True, timeout=60,
                   capture_output=True)
    crashed = _new_segments(before)
    assert crashed, 'the crashed participant left no segment'
    live = subprocess.Popen([sys.executable, '-c', LEAK, 'live'], env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert live.stdout.readline().strip() == 'ready'
        alive = _new_segments(before) - crashed
        assert alive, 'the live participant has no segment'
        removed, _ = remove_stale_segments(min_age_s=0.0)
        assert removed >= len(crashed)
        left = {p.name for p in SHM.glob('fastdds_*_el')}
        assert not crashed & left
        assert alive <= left
    finally:
        live.kill()
        live.wait()
        remove_stale_segments(min_age_s=0.0)  # the killed one's, left by this test
