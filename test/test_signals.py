"""Stopping: ``run``, the nodes, ``play`` and ``record-odom`` stop within 2 s of SIGINT or
SIGTERM with exit code 0 — also as background jobs (which inherit SIGINT ignored: the
``preexec_fn`` below does what a non-interactive shell does for ``cmd &``) and with a full
queue — and ``record-odom`` keeps every pose it received (SIGINT, and ``kill -9``)."""
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

CLI = [sys.executable, '-m', 'hndesc_ros.cli']
STOP_S = 2.0


def env():
    e = dict(os.environ, PYTHONUNBUFFERED='1')
    e['ROS_DOMAIN_ID'] = str(random.randint(1, 200))
    e.setdefault('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp')
    return e


def background(cmd, e, log):
    """Start like ``cmd &`` from a script (SIGINT ignored on entry), output to file ``log``."""
    proc = subprocess.Popen([str(a) for a in cmd], env=e, stdout=open(log, 'w'),
                            stderr=subprocess.STDOUT,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    proc.log = log
    return proc


def stop_time(proc, sig):
    """Seconds from ``sig`` to exit, and the exit code."""
    t = time.monotonic()
    proc.send_signal(sig)
    try:
        code = proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f'{proc.args[3:5]} still running 15 s after {sig!r}')
    return time.monotonic() - t, code


def output(proc):
    return proc.log.read_text()


def wait_for(proc, text, timeout=60):
    """Wait until the process has printed ``text`` (it must)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None and text not in output(proc):
        time.sleep(0.1)
    if text not in output(proc):
        pytest.fail(f'{text!r} not printed; output: {output(proc)[-2000:]}')


@pytest.fixture(scope='module')
def bag(tmp_path_factory, kitti06):
    from hndesc_ros.datasets.bags import sequence_to_bag
    from hndesc_ros.datasets.kitti import KittiSequence
    return sequence_to_bag(KittiSequence(kitti06, 0, 40), tmp_path_factory.mktemp('b') / 'k06')


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM])
def test_run_as_background_job_stops_with_a_full_queue(tmp_path, bag, sig):
    e = env()
    data = yaml.safe_load(open('config/vo.yaml'))
    data['frontend_node']['ros__parameters']['features']['extractor'] = 'residual'  # slow
    data['frontend_node']['ros__parameters']['ros'].update(reliable=True, drop_stale=False)
    params = tmp_path / 'p.yaml'
    params.write_text(yaml.safe_dump(data))
    run = background(CLI + ['run', '--params', params], e, tmp_path / 'run.log')
    wait_for(run, 'front end ready')
    play = subprocess.run(CLI + ['play', str(bag), '--rate', '20', '--wait', '20'], env=e,
                          capture_output=True, text=True, timeout=120)
    assert play.returncode == 0, play.stderr
    # 40 pairs in 0.2 s; the front end needs ~0.3 s a pair: ~10 s of queue left to process
    dt, code = stop_time(run, sig)
    assert code == 0 and dt < STOP_S, (code, dt, output(run)[-2000:])
    children = subprocess.run(['pgrep', '-f', f'--params-file {params}'], capture_output=True)
    assert children.stdout.strip() == b'', 'a node outlived hndesc-vo run'


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM])
def test_node_stops_on_signal_as_background_job(tmp_path, sig):
    node = background([sys.executable, '-m', 'hndesc_ros.ros.backend_node', '--ros-args',
                       '--params-file', 'config/vo.yaml'], env(), tmp_path / 'node.log')
    time.sleep(3)  # imports and DDS start-up
    dt, code = stop_time(node, sig)
    assert code == 0 and dt < STOP_S, (code, dt, output(node)[-2000:])


def test_play_stops_on_sigint_and_sigterm(tmp_path, bag):
    for sig in (signal.SIGINT, signal.SIGTERM):
        play = background(CLI + ['play', bag, '--loop', '--rate', '0.5'], env(),
                          tmp_path / 'play.log')
        time.sleep(3)
        dt, code = stop_time(play, sig)
        assert code == 0 and dt < STOP_S, (sig, code, dt, output(play))
        assert 'published' in output(play)


def odometry_source(n, qos='topic_qos(True, 100)', wait=True, linger=1.0):
    """The script of a child process that publishes ``n`` odometry messages on ``odom``
    (stamps 100 + i s, x = i) with the QoS expression ``qos`` — once a subscriber has matched
    when ``wait`` — then prints ``published`` and stays ``linger`` s (its history with it)."""
    return f'''
import time, rclpy
from nav_msgs.msg import Odometry
from rclpy.qos import qos_profile_sensor_data
from hndesc_ros.ros.common import topic_qos
rclpy.init()
node = rclpy.create_node('odom_source')
pub = node.create_publisher(Odometry, 'odom', {qos})
end = time.monotonic() + 20
while {wait} and pub.get_subscription_count() == 0 and time.monotonic() < end:
    time.sleep(0.05)
for i in range({n}):
    m = Odometry()
    m.header.stamp.sec = 100 + i
    m.pose.pose.position.x = float(i)
    m.pose.pose.orientation.w = 1.0
    pub.publish(m)
    time.sleep(0.02)
print('published', flush=True)
time.sleep({linger})
'''


def publish_odometry(n, e):
    """Publish ``n`` odometry messages (poses x = 0..n-1) from a child process."""
    subprocess.run([sys.executable, '-c', odometry_source(n)], env=e, check=True, timeout=60)


@pytest.mark.parametrize('how', ['sigint', 'kill9'])
def test_record_odom_keeps_every_pose(tmp_path, how):
    e = env()
    out = tmp_path / 'odom.tum'
    rec = background(CLI + ['record-odom', 'odom', out], e, tmp_path / 'rec.log')
    publish_odometry(7, e)
    if how == 'sigint':
        dt, code = stop_time(rec, signal.SIGINT)
        assert code == 0 and dt < STOP_S, (code, dt)
        assert 'recorded 7 odometry messages' in output(rec)
    else:
        rec.kill()
        rec.wait()
    rows = np.loadtxt(out, ndmin=2)
    assert rows.shape == (7, 8)
    assert np.allclose(rows[:, 0], 100 + np.arange(7)) and np.allclose(rows[:, 1], np.arange(7))


def record_five_beside(source, tmp_path, before=None):
    """Run ``record-odom --count 5`` while the odometry script ``source`` runs in a child
    process (after its output shows ``before``, when given); returns (result, the file)."""
    e = env()
    src = background([sys.executable, '-c', source], e, tmp_path / 'src.log')
    try:
        if before:
            wait_for(src, before)
        out = tmp_path / 'odom.tum'
        r = subprocess.run(CLI + ['record-odom', 'odom', str(out), '--count', '5', '--timeout',
                                  '30'], env=e, capture_output=True, text=True, timeout=60)
        return r, out
    finally:
        src.kill()
        src.wait()


def test_record_odom_started_late_gets_the_back_ends_earlier_poses(tmp_path):
    """The back end's ``odom`` is transient-local (its last 100 poses): a recorder that starts
    after the first poses were published still records them (the README's pip-only flow
    starts the recorder beside the nodes, and it can be slower to start than the first pose)."""
    # all five are out before the recorder exists
    r, out = record_five_beside(odometry_source(5, 'topic_qos(True, 100, True)', wait=False,
                                                linger=30), tmp_path, before='published')
    assert r.returncode == 0 and 'recorded 5 odometry messages' in r.stdout, r.stdout
    assert np.allclose(np.loadtxt(out, ndmin=2)[:, 0], 100 + np.arange(5))


def test_record_odom_follows_a_best_effort_publisher(tmp_path):
    """A third-party odometry topic published best effort (a reliable subscription would not
    match it): the recorder takes the publisher's QoS and records it."""
    r, _ = record_five_beside(odometry_source(5, 'qos_profile_sensor_data', linger=5),
                              tmp_path)
    assert r.returncode == 0 and 'recorded 5 odometry messages' in r.stdout, r.stdout
