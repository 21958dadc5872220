"""The soak's short version (``bench/soak.py``, 120 frames, every fault kind): real KITTI 06
frames through both nodes over DDS; each injected fault is counted under its reason, the nodes
stay alive and stop on SIGINT with exit code 0, a corrupt weights file and a truncated bag are
refused with one line and exit code 2.

A stop takes about 0.3 s. A node whose DDS teardown hangs is ended by its watchdog after
``TEARDOWN_S`` with exit code 1, and it prints the threads' stacks first
(:func:`hndesc_ros.ros.common.teardown_deadline`, a rare hang inside rclpy / Fast DDS). That
bounded stop counts as a stop. Any other non-zero code fails the test, which then prints the
node's output."""
import datetime
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def stopped(code, log: str) -> bool:
    """Exit code 0, or the teardown watchdog's 1 with its timeout report in the node's log."""
    from hndesc_ros.ros.common import TEARDOWN_S
    return code == 0 or (code == 1 and f'Timeout ({datetime.timedelta(seconds=TEARDOWN_S)})!'
                         in log)


def test_soak_short(tmp_path, kitti06):
    r = subprocess.run([sys.executable, str(ROOT / 'bench' / 'soak.py'), '--frames', '120',
                        '--no-clean', '--extractor', 'rootsift', '--fault-rate', '0.3',
                        '--rate', '20', '--out', str(tmp_path)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rep = json.loads((tmp_path / 'soak.json').read_text())
    for check in ('corrupt_weights', 'truncated_bag'):
        c = rep[check]
        assert c['exit_code'] == 2 and c['stderr_lines'] == 1, (check, c)
    assert rep['corrupt_weights']['names_file']
    f = rep['faults']
    logs = [(tmp_path / 'faults' / f'{n}.log').read_text()
            for n in ('frontend_node', 'backend_node')]
    assert f['nodes_alive_at_end'] == [True, True]
    assert all(stopped(c, log) for c, log in zip(f['exit_codes_on_sigint'], logs)), \
        (f['exit_codes_on_sigint'], [log[-1500:] for log in logs])
    assert f['stuck_at_frames'] == []
    assert f['injected'] == f['counted'], (f['injected'], f['counted'])
    reasons = {'unpaired_image', 'duplicate_stamp', 'stamp_backwards', 'bad_encoding',
               'bad_image_size', 'stereo_size_mismatch', 'bad_camera_info'}
    assert set(f['injected']['frontend']) == reasons  # every kind injected at least once
    assert f['odometry_messages'] == f['frontend_frames'] == f['backend_frames']
    lost = sum(f['injected']['frontend'][k] for k in ('unpaired_image', 'duplicate_stamp')) \
        - f['injected']['frontend']['duplicate_stamp']  # a duplicate loses no frame
    assert f['frontend_frames'] >= 120 - lost - 10
    assert f['poses'] == f['odometry_messages'] and f['ate_rmse_m'] < 1.0
