"""Fast DDS shared-memory segments that a dead process left behind, found and removed.

Every Fast DDS participant maps a segment file in ``/dev/shm`` (``fastdds_`` and 16 letters
or digits: 0.5 MB by default, 16 MB with the package's large-data profile) and holds an
exclusive ``flock`` on its companion ``<segment>_el`` for as long as it lives. A process that
ends without tearing Fast DDS down (killed, crashed, or ended by the nodes' teardown watchdog
after a hang) leaves both files behind, and nothing else removes them: on the machine this
package was developed on, test runs had left 288 MB. A robot whose nodes restart under a
supervisor fills a container's default 64 MB ``/dev/shm`` after a few such ends, and then
large images no longer pass between its processes.

:func:`remove_stale_segments` runs before each of the package's processes starts ROS
(:func:`hndesc_ros.ros.common.init_ros`): a segment whose lock file no process holds, and
that is older than a few seconds (a participant that is being created may not hold its lock
yet), is removed with its lock file. The lock test is that of Fast DDS's own ``fastdds shm
clean`` (not on PyPI), the age guard is added here, and unlike that tool this leaves the
transport's port files (about 50 kB each, shared by the participants of a domain) alone.
``HNDESC_SHM_CLEAN=0`` turns it off.
"""
from __future__ import annotations

import logging
import os
import re
import stat
import time
from pathlib import Path
from typing import Tuple

LOG = logging.getLogger(__name__)

SHM_DIR = Path('/dev/shm')
SEGMENT_LOCK = re.compile(r'fastdds_[0-9a-z]{16}_el')
MIN_AGE_S = 10.0  # a younger lock file may belong to a participant still being created


def remove_stale_segments(shm_dir: Path = SHM_DIR, min_age_s: float = MIN_AGE_S
                          ) -> Tuple[int, int]:
    """Remove the Fast DDS segments in ``shm_dir`` that no live process holds.

    A segment is stale when nobody holds the ``flock`` of its ``_el`` file (taken here
    without waiting, and kept while both files are removed) and that file was last modified
    at least ``min_age_s`` seconds ago. Files of other names, anything but regular files (a
    link is not followed), segments without a lock file, and files this user may not open or
    remove are left as they are; a stale lock file whose segment is already gone is removed
    and not counted.

    Args:
        shm_dir: where Fast DDS keeps its segments (Linux: /dev/shm).
        min_age_s: the least age of a lock file (s).
    Returns:
        (segments removed, bytes freed).
    """
    try:
        import fcntl  # POSIX (Fast DDS keeps its segments elsewhere on Windows)
        names = os.listdir(shm_dir)
    except (ImportError, OSError):
        return 0, 0
    now, removed, freed = time.time(), 0, 0
    for name in names:
        if not SEGMENT_LOCK.fullmatch(name):
            continue
        lock, segment = Path(shm_dir) / name, Path(shm_dir) / name[:-3]
        try:
            info = lock.lstat()
            if not stat.S_ISREG(info.st_mode) or now - info.st_mtime < min_age_s:
                continue
            fd = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW)  # Fast DDS opens it so too
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held: its participant lives
            try:
                seg = segment.lstat()
            except FileNotFoundError:
                seg = None
            if seg is not None and stat.S_ISREG(seg.st_mode):
                segment.unlink()
                removed, freed = removed + 1, freed + seg.st_size
            lock.unlink()
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed, freed


def clean_before_start() -> None:
    """Stale segments removed from /dev/shm before a process starts ROS.

    :func:`remove_stale_segments` with its defaults, unless the environment has
    ``HNDESC_SHM_CLEAN=0``; what it removed is logged at INFO, so that a start that fails
    still says why in one line (a process that configures no logging prints nothing).
    """
    if os.environ.get('HNDESC_SHM_CLEAN', '1') == '0':
        return
    removed, freed = remove_stale_segments()
    if removed:
        LOG.info('removed %d Fast DDS shared-memory segment(s) (%.1f MB) left in %s by '
                 'processes that ended without closing them', removed, freed / 2 ** 20, SHM_DIR)
