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
    # at most 800 (features.sift_pixels: SIFT on about 75,000 px finds 754 here)
    n = len(z['keypoints0'])
    assert 500 < n <= 800 and z['descriptors0'].shape == (n, 256)
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
                 ['kitti', '--sequence', tmp_path, '--out', tmp_path / 'o'],
                 ['variant', '--sequence', kitti06, '--out', tmp_path / 'v', '--blackout',
                  '48:5'],   # past the last of its 51 frames
                 ['variant', '--sequence', kitti06, '--out', tmp_path / 'v', '--blackout',
                  'twenty']):
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


def test_weights_problems_are_one_line_naming_the_file(tmp_path, kitti06):
    """Missing, corrupt (.pt for torch and for onnxruntime), not ONNX, another variant."""
    from hndesc_ros.models import shipped_weights
    garbage = tmp_path / 'corrupt.pt'
    garbage.write_bytes(b'\x80\x04garbage' * 10)
    not_onnx = tmp_path / 'model.onnx'
    not_onnx.write_text('this is not a protobuf')
    img = kitti06 / 'image_0' / '000000.png'
    cases = [
        (['--weights', tmp_path / 'missing.pt'], 'missing.pt', 'not found'),
        (['--weights', garbage, '--backend', 'torch'], 'corrupt.pt', 'not a readable'),
        (['--weights', garbage], 'corrupt.pt', 'not a readable'),
        (['--weights', not_onnx], 'model.onnx', 'not an ONNX model'),
        (['--extractor', 'cnn', '--weights', shipped_weights('residual', 'onnx')],
         'hndesc_residual.onnx', "holds the 'residual' model"),
    ]
    for extra, name, what in cases:
        r = run('extract', img, '--out', tmp_path, *extra)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1, (extra, r.stderr)
        assert name in lines[0] and what in lines[0], (extra, lines[0])


def test_featureless_image_warns(tmp_path):
    import cv2
    flat = tmp_path / 'flat.png'
    cv2.imwrite(str(flat), np.full((120, 160), 128, np.uint8))
    r = run('extract', flat, '--out', tmp_path, '--extractor', 'rootsift')
    assert r.returncode == 0, r.stderr
    assert '0 keypoints' in r.stdout and 'featureless' in r.stderr


def test_kitti_runs_with_torch_unimportable(tmp_path, kitti06):
    """The runtime (ONNX Runtime, shipped .onnx) needs no torch: 3 real KITTI 06 frames."""
    code = ('import sys; sys.modules["torch"] = None; from hndesc_ros.cli import main; '
            'rc = main(sys.argv[1:]); '
            'assert sys.modules["torch"] is None, "torch was imported"; sys.exit(rc)')
    r = subprocess.run([sys.executable, '-c', code, 'kitti', '--sequence', str(kitti06),
                        '--count', '3', '--out', str(tmp_path / 'o')],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert 'No module named' not in r.stderr
    traj = np.loadtxt(tmp_path / 'o' / 'trajectory_kitti.txt')
    assert traj.shape == (3, 12) and np.isfinite(traj).all()
    assert 0.5 < np.linalg.norm(traj[2, [3, 7, 11]]) < 3.0  # KITTI 06 moves ~0.8 m/frame
