"""Stale Fast DDS shared-memory segments (hndesc_ros.ros.shm): which ones go, which stay."""
import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

from hndesc_ros.ros.shm import SEGMENT_LOCK, remove_stale_segments

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
    orphan = tmp_path / 'fastdds_22222222222222cc_el'  # its segment already gone
    orphan.touch()
    os.utime(orphan, (time.time() - 60, time.time() - 60))
    link = tmp_path / 'fastdds_33333333333333dd_el'  # a link is not followed
    link.symlink_to(tmp_path / 'fastdds_0123456789abcdef_el')
    fd = os.open(tmp_path / 'fastdds_fedcba9876543210_el', os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a live participant's hold
    try:
        assert remove_stale_segments(tmp_path, min_age_s=10.0) == (1, 5000)
    finally:
        os.close(fd)
    assert not dead.exists() and not Path(f'{dead}_el').exists()
    assert not orphan.exists()  # removed, not counted
    assert link.is_symlink()
    for kept in (held, young, bare, port, other):
        assert kept.exists()
    # released and old enough: it goes too; the young one waits for its age
    assert remove_stale_segments(tmp_path, min_age_s=10.0) == (1, 1000)
    assert not held.exists() and young.exists()


PROBE = """
import os, sys, time
import rclpy
from std_msgs.msg import String
rclpy.init()
node = rclpy.create_node('shm_probe')
node.create_publisher(String, 'shm_probe', 10)
# the files this participant holds open: its own segment lock files are among them
mine = set()
for fd in os.listdir('/proc/self/fd'):
    try:
        mine.add(os.path.basename(os.readlink(f'/proc/self/fd/{fd}')))
    except OSError:
        pass
print(' '.join(sorted(mine)), flush=True)
if sys.argv[1] == 'crash':
    os._exit(0)  # no Fast DDS teardown: its segment stays behind
time.sleep(30)
"""


def _own_locks(line: str) -> set:
    """The segment lock files among the names a probe printed."""
    return {n for n in line.split() if SEGMENT_LOCK.fullmatch(n)}


def test_a_crashed_participants_segment_goes_and_a_live_ones_stays():
    """Real Fast DDS: a process that ends without teardown leaves its segment; the clean-up
    removes it, while the segment of a participant that is still running stays. Each probe
    names its own lock files (from its open descriptors), so other Fast DDS processes on the
    machine do not disturb the test."""
    r = subprocess.run([sys.executable, '-c', PROBE, 'crash'], check=True, timeout=60,
                       capture_output=True, text=True)
    crashed = _own_locks(r.stdout)
    assert crashed, 'the probe held no Fast DDS shared-memory segment (another RMW?)'
    then = time.time() - 60  # past the age guard, as a segment left a minute ago would be
    for name in crashed:
        os.utime(SHM / name, (then, then))
    live = subprocess.Popen([sys.executable, '-c', PROBE, 'live'], stdout=subprocess.PIPE,
                            text=True)
    try:
        alive = _own_locks(live.stdout.readline())
        assert alive
        remove_stale_segments()
        for name in crashed:
            assert not (SHM / name).exists() and not (SHM / name[:-3]).exists()
        for name in alive:
            assert (SHM / name).exists() and (SHM / name[:-3]).exists()
    finally:
        live.kill()
        live.wait()
    for name in alive:  # the killed probe's, left by this test
        if (SHM / name).exists():
            os.utime(SHM / name, (then, then))
    remove_stale_segments()


def test_every_process_start_cleans_up_silently():
    """init_ros (every node and tool) removes a stale segment before it starts ROS, and says
    nothing on stderr about it: a start that fails must still fail with one line."""
    stale = _segment(SHM, f'fastdds_{os.urandom(8).hex()}', 4096)
    try:
        r = subprocess.run([sys.executable, '-c', 'import rclpy\n'
                            'from hndesc_ros.ros.common import init_ros\n'
                            'init_ros()\nrclpy.shutdown()'],
                           env={**os.environ, 'HNDESC_SHM_CLEAN': '1'},
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and r.stderr == '', r.stderr
        assert not stale.exists() and not Path(f'{stale}_el').exists()
    finally:
        for f in (stale, Path(f'{stale}_el')):
            f.unlink(missing_ok=True)
