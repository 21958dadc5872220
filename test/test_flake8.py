"""Style: ament_flake8 conventions (99 columns) over the package, training, bench and tests."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_flake8():
    r = subprocess.run([sys.executable, '-m', 'flake8', '--max-line-length', '99', 'hndesc_ros',
                        'training', 'bench', 'test', 'launch', 'setup.py'], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
