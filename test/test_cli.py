"""The CLI: outputs of extract/match/eval-traj, and one readable line with exit code 2 on bad
input."""
import subprocess
import sys

import numpy as np

CLI = [sys.executable, '-m', 'hndesc_ros.cli']


def run(*args):
    return subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True)


def test_match_writes_npz_and_plot(tmp_path, kitti06):
    a, b = kitti06 / 'image_0' / '000000.png', kitti06 / 'image_0' / '000001.png'
    r = run('match', a, b, '--out', tmp_path / 'm.npz', '--plot', tmp_path / 'm.png',
            '--extractor', 'residual', '--max-keypoints', '800')
    assert r.returncode == 0, r.stderr
    z = np.load(tmp_path / 'm.npz')
    assert z['keypoints0'].shape == (800, 2) and z['descriptors0'].shape == (800, 256)
    assert z['matches'].ndim == 2 and z['matches'].shape[1] == 2
    assert len(z['distances']) == len(z['matches']) > 300
    assert (tmp_path / 'm.png').stat().st_size > 10000


def test_extract_several_images(tmp_path, kitti06):
    imgs = [kitti06 / 'image_0' / f'00000{i}.png' for i in range(2)]
    r = run('extract', *imgs, '--out', tmp_path, '--extractor', 'rootsift')
    assert r.returncode == 0, r.stderr
    z = np.load(tmp_path / '000001.npz')
    assert z['descriptors'].shape[1] == 128


def test_bad_input_exits_2_with_one_line(tmp_path, kitti06):
    bad = tmp_path / 'bad.png'
    bad.write_bytes(b'garbage')
    for args in (['match', bad, kitti06 / 'image_0' / '000000.png', '--out', tmp_path / 'x'],
                 ['extract', tmp_path / 'missing.png', '--out', tmp_path],
                 ['eval-traj', '--gt', bad, '--est', bad],
                 ['kitti', '--sequence', tmp_path, '--out', tmp_path / 'o']):
        r = run(*args)
        assert r.returncode == 2, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith('hndesc-vo: error:'), r.stderr


def test_eval_traj_on_real_trajectories(tmp_path):
    from conftest import shared_path
    d = shared_path('trajectories', 'kitti_00')
    r = run('eval-traj', '--gt', d / 'KITTI_00_gt.txt', '--est', d / 'KITTI_00_ORB.txt',
            '--out', tmp_path / 'm.json')
    assert r.returncode == 0, r.stderr
    assert 'ate_rmse_m: 1.30' in r.stdout.replace('  ', ' ') or '1.30' in r.stdout
    assert (tmp_path / 'm.json').exists()
