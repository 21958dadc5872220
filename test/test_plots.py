"""Figures a user looks at: the trajectory plot (top view + error over distance), the
comparison of several extractors, matches coloured by RANSAC, and the progress bars on stderr.

Trajectories are synthetic numbers (plots only); matches use two real KITTI 06 frames.
"""
import subprocess
import sys

import numpy as np
import pytest

from hndesc_ros.config import load_config
from hndesc_ros.eval import plots
from hndesc_ros.eval import trajectory as tj
from hndesc_ros.features.matching import verify_matches
from hndesc_ros.runner import write_comparison, write_outputs
from hndesc_ros.se3 import make_T

PNG = b'\x89PNG\r\n\x1a\n'


@pytest.fixture
def figures(monkeypatch):
    """Every figure saved through plots.save_figure, as (axes, suptitle) before it closes."""
    seen = []
    real = plots.save_figure

    def spy(fig, path, *args, **kwargs):
        seen.append((list(fig.axes), fig.get_suptitle()))
        return real(fig, path, *args, **kwargs)

    monkeypatch.setattr(plots, 'save_figure', spy)
    return seen


def straight_road(n: int = 40, noise: float = 0.1, seed: int = 0):
    """(N, 4, 4) ground truth driving 1.2 m a frame along z, and an estimate with lateral
    noise and a small yaw offset (so the alignment has something to do)."""
    rng = np.random.default_rng(seed)
    gt = np.array([make_T(np.eye(3), [0.0, 0.0, 1.2 * k]) for k in range(n)])
    c, s = np.cos(0.02), np.sin(0.02)
    yaw = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    est = np.array([make_T(yaw, yaw @ (p[:3, 3] + [rng.normal(0, noise), 0, 0])) for p in gt])
    return est, gt


def fake_run(mode: str = 'stereo', gt_scale: bool = False, noise: float = 0.1, seed: int = 0):
    """A run dict shaped like runner.run_sequence's, from synthetic poses."""
    est, gt = straight_road(noise=noise, seed=seed)
    align = 'sim3' if (mode == 'mono' and not gt_scale) else 'se3'
    metrics = dict(tj.evaluate(est, gt, align), mode=mode, gt_scale=mode == 'mono' and gt_scale)
    return {'poses': est, 'gt': gt, 'stamps': np.arange(len(gt)) * 0.1, 'metrics': metrics}


def test_trajectory_figure_has_top_view_and_error_panel(tmp_path, figures):
    run = fake_run()
    paths = write_outputs(run, tmp_path, load_config(), '06 test')
    assert paths['plot'] == tmp_path / 'trajectory.png'
    assert paths['plot'].read_bytes()[:8] == PNG
    assert (tmp_path / 'metrics.json').is_file()  # written next to the metrics
    (axes, title), = figures
    assert len(axes) == 2
    top, err = axes
    assert top.get_xlabel().startswith('x (m') and top.get_ylabel().startswith('z (m')
    labels = top.get_legend_handles_labels()[1]
    assert {'ground truth', 'start', 'end'} <= set(labels)
    assert err.get_xlabel() == 'distance travelled (m)'
    assert err.get_ylabel() == 'position error (m)'
    assert 'stereo' in title and f'ATE RMSE {run["metrics"]["ate_rmse_m"]:.3f} m' in title
    # the error curve is the aligned estimate's distance to the ground truth
    curve = err.get_lines()[0].get_ydata()
    assert np.sqrt(np.mean(curve ** 2)) == pytest.approx(run['metrics']['ate_rmse_m'])


@pytest.mark.parametrize('gt_scale,words', [(True, 'mono, GT scale'),
                                            (False, 'mono, no GT scale')])
def test_trajectory_title_says_mono_and_scale(tmp_path, figures, gt_scale, words):
    run = fake_run('mono', gt_scale)
    write_outputs(run, tmp_path, load_config(), '06 mono')
    title = figures[0][1]
    assert words in title
    assert ('Sim(3) aligned' in title) == (not gt_scale)


def test_trajectory_without_ground_truth_is_one_panel(tmp_path, figures):
    est, _ = straight_road()
    plots.plot_trajectory(est[:, :3, 3], tmp_path / 't.png', None, 'no ground truth')
    assert len(figures[0][0]) == 1 and (tmp_path / 't.png').is_file()


def test_comparison_figure_puts_each_ate_in_the_legend(tmp_path, figures):
    runs = {'residual-small': fake_run(noise=0.05, seed=1), 'rootsift': fake_run(seed=2)}
    path = write_comparison(runs, tmp_path / 'trajectories.png', 'KITTI 06')
    assert path.read_bytes()[:8] == PNG
    (axes, title), = figures
    assert len(axes) == 2 and 'stereo' in title
    labels = axes[0].get_legend_handles_labels()[1]
    for name, run in runs.items():
        assert f'{name} (ATE {run["metrics"]["ate_rmse_m"]:.3f} m)' in labels
    assert labels.count('ground truth') == 1  # one shared ground truth
    assert len(axes[1].get_lines()) == 2  # one error curve per extractor


@pytest.fixture(scope='module')
def kitti_pair(kitti06):
    """Frames 0 and 5 of KITTI 06 (left camera), RootSIFT features and their matches."""
    from hndesc_ros.config import FeatureConfig
    from hndesc_ros.features import Extractor, match_numpy, read_image
    im0 = read_image(kitti06 / 'image_0' / '000000.png')
    im1 = read_image(kitti06 / 'image_0' / '000005.png')
    ex = Extractor(FeatureConfig(extractor='rootsift', max_keypoints=1000))
    f0, f1 = ex.extract(im0), ex.extract(im1)
    m = match_numpy(f0.descriptors, f1.descriptors, 0.9)
    return im0, im1, f0.keypoints, f1.keypoints, m.indices


@pytest.mark.parametrize('geometry', ['fundamental', 'homography'])
def test_match_plot_title_counts_are_the_ransac_mask(tmp_path, figures, kitti_pair, geometry):
    im0, im1, kp0, kp1, matches = kitti_pair
    v = verify_matches(kp0, kp1, matches, geometry, 3.0)
    assert v.inliers.dtype == bool and v.inliers.shape == (len(matches),)
    assert v.model is not None and v.model.shape == (3, 3)
    n_in = int(v.inliers.sum())
    n_out = len(matches) - n_in
    assert n_in >= 20 and n_out > 0  # a real pair 5 frames apart has both

    res = plots.plot_matches(im0, im1, kp0, kp1, matches, v, tmp_path / 'm.png', 'pair')
    assert (res.inliers, res.outliers) == (n_in, n_out)
    assert f'{n_in} inliers' in res.title and f'{n_out} outliers' in res.title
    assert geometry in res.title
    (axes, _), = figures
    assert axes[0].get_title() == res.title  # the title drawn is the one returned
    data = res.path.read_bytes()
    assert data[:8] == PNG and 10_000 < len(data) < 400_000


def test_verify_matches_with_too_few_matches_marks_all_outliers():
    kp = np.random.default_rng(0).uniform(0, 100, (5, 2))
    v = verify_matches(kp, kp, np.c_[np.arange(5), np.arange(5)], 'fundamental')
    assert v.model is None and v.counts == (0, 5)


def test_match_cli_saves_inlier_mask(tmp_path, kitti06):
    a, b = kitti06 / 'image_0' / '000000.png', kitti06 / 'image_0' / '000005.png'
    r = subprocess.run([sys.executable, '-m', 'hndesc_ros.cli', 'match', str(a), str(b),
                        '--out', str(tmp_path / 'm.npz'), '--plot', str(tmp_path / 'm.png'),
                        '--extractor', 'rootsift', '--geometry', 'homography',
                        '--ransac-threshold', '4'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    z = np.load(tmp_path / 'm.npz')
    assert z['inliers'].dtype == bool and len(z['inliers']) == len(z['matches'])
    assert str(z['geometry']) == 'homography' and z['model'].shape == (3, 3)
    n_in = int(z['inliers'].sum())
    assert f'{n_in} inliers / {len(z["matches"]) - n_in} outliers (homography' in r.stdout
    assert (tmp_path / 'm.png').read_bytes()[:8] == PNG


def test_hpatches_progress_bar_goes_to_stderr(churchill, capsys):
    from hndesc_ros.eval import hpatches
    from hndesc_ros.types import Features
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(np.arange(50, 500, 50), np.arange(50, 400, 50)), -1)
    grid = grid.reshape(-1, 2).astype(np.float32)

    def extract(image):  # a stand-in extractor: fixed grid, random descriptors
        d = rng.normal(size=(len(grid), 8)).astype(np.float32)
        return Features(grid, d / np.linalg.norm(d, axis=1, keepdims=True),
                        np.ones(len(grid), np.float32))

    res = hpatches.evaluate(churchill, {'grid': extract}, progress=True)
    out, err = capsys.readouterr()
    assert set(res) == {'grid'} and out == ''
    assert 'HPatches' in err and '1/1' in err


def test_vo_progress_bar_goes_to_stderr(kitti06, capsys):
    from hndesc_ros.datasets.kitti import KittiSequence
    from hndesc_ros.runner import run_sequence
    seq = KittiSequence(kitti06, count=3)
    run_sequence(seq, load_config(None, {'features.extractor': 'rootsift'}), progress=True)
    out, err = capsys.readouterr()
    assert out == ''
    assert 'VO rootsift' in err and '3/3' in err and 'lost=0' in err
