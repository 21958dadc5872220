"""hndesc_ros.ros.sync: pairing left and right images by stamp (pure Python, no ROS)."""
from hndesc_ros.ros.sync import StereoSynchronizer


def test_exact_pairing_in_either_arrival_order():
    s = StereoSynchronizer(0, 5)
    assert s.push('left', 100, 'L1') == []
    assert s.push('right', 100, 'R1') == [(100, 'L1', 'R1')]
    assert s.push('right', 200, 'R2') == []            # right first
    assert s.push('left', 201, 'L2') == []             # 1 ns off: no exact pair
    assert s.push('left', 200, 'L2') == [(200, 'L2', 'R2')]
    assert s.dropped == {'left': 0, 'right': 0}
    assert not s.queues['right']


def test_tolerance_pairs_the_nearest_stamp_within_it():
    s = StereoSynchronizer(10, 5)
    s.push('left', 1000, 'L')
    assert s.push('right', 1007, 'R') == [(1000, 'L', 'R')]   # the pair carries the left stamp
    assert s.push('right', 2000, 'R2') == []
    assert s.push('left', 2020, 'L2') == []                  # 20 ns apart: beyond 10
    s = StereoSynchronizer(10, 5)
    s.push('right', 2995, 'Ra')
    s.push('right', 3004, 'Rb')
    assert s.push('left', 3003, 'L') == [(3003, 'L', 'Rb')]   # the nearest of both candidates


def test_unpaired_items_are_dropped_and_counted():
    s = StereoSynchronizer(0, 5)
    s.push('left', 100, 'L1')
    s.push('left', 200, 'L2')                          # its right never comes
    s.push('right', 150, 'R')                          # its left never comes
    assert s.push('right', 300, 'R3') == []
    assert s.push('left', 300, 'L3') == [(300, 'L3', 'R3')]
    assert s.dropped == {'left': 2, 'right': 1}        # everything older than 300 can't pair
    assert not s.queues['left'] and not s.queues['right']


def test_queue_overflow_and_replaced_stamps_are_counted():
    s = StereoSynchronizer(0, 2)
    for ts in (1, 2, 3):
        s.push('left', ts, f'L{ts}')
    assert list(s.queues['left']) == [2, 3] and s.dropped['left'] == 1   # oldest goes first
    s.push('left', 3, 'L3 again')                      # same stamp twice: the newer one stays
    assert s.dropped['left'] == 2
    assert s.push('right', 3, 'R3') == [(3, 'L3 again', 'R3')]


def test_out_of_order_arrivals():
    s = StereoSynchronizer(0, 5)
    s.push('left', 200, 'L2')
    s.push('left', 100, 'L1')                          # left stream out of order
    assert s.push('right', 100, 'R1') == [(100, 'L1', 'R1')]
    assert s.push('right', 200, 'R2') == [(200, 'L2', 'R2')]
    # a pair older than one already emitted still comes out when both halves arrive (the node
    # drops it as stamp_backwards); a lone late half is dropped once a newer pair completes
    s.push('left', 50, 'L0')
    assert s.push('right', 50, 'R0') == [(50, 'L0', 'R0')]
    s.push('left', 60, 'late')
    s.push('left', 300, 'L3')
    assert s.push('right', 300, 'R3') == [(300, 'L3', 'R3')]
    assert s.dropped == {'left': 1, 'right': 0}


def test_latest_worker_replaces_waiting_items_and_counts_them():
    """Latest frame wins: while one item is processed, newer ones replace the waiting one."""
    import threading
    import time

    from hndesc_ros.ros.sync import LatestWorker
    done, started, release = [], threading.Event(), threading.Event()

    def work(item):
        started.set()
        release.wait(5)
        done.append(item)

    w = LatestWorker(work)
    w.submit(0)
    assert started.wait(5)            # 0 is being processed
    assert not w.submit(1)            # 1 waits
    assert w.submit(2) and w.submit(3)  # 2 replaced 1, 3 replaced 2
    release.set()
    end = time.monotonic() + 5
    while len(done) < 2 and time.monotonic() < end:
        time.sleep(0.01)
    w.stop()
    assert done == [0, 3] and w.stale == 2


def test_latest_worker_survives_an_exception_in_its_work():
    import threading
    import time

    from hndesc_ros.ros.sync import LatestWorker
    errors, done, finished = [], [], threading.Event()

    def work(item):
        if item == 'bad':
            raise RuntimeError('boom')
        done.append(item)
        finished.set()

    w = LatestWorker(work, on_error=errors.append)
    w.submit('bad')
    time.sleep(0.2)
    w.submit('good')
    assert finished.wait(5)
    w.stop()
    assert done == ['good'] and [str(e) for e in errors] == ['boom']
