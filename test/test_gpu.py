"""CUDA and TensorRT paths. These are the only tests skipped on machines without a GPU; they run
on the project's GPU machine (see README, "GPU path"). The GPU front end's code also runs eagerly
on the CPU, which is tested everywhere."""
import numpy as np
import pytest
import torch

from hndesc_ros.config import Config, FeatureConfig, MatchingConfig, VOConfig
from hndesc_ros.errors import ConfigError
from hndesc_ros.features.extractor import prepare_input
from hndesc_ros.features.sift import Sift
from hndesc_ros.inference import create_backend
from hndesc_ros.models import shipped_weights

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')


def _inputs(frame):
    x = prepare_input(frame, 1)
    sift = Sift(1000)
    return x, sift.describe(frame, sift.detect(frame))[1]


@cuda
@pytest.mark.parametrize('fp16,tol', [(False, 1e-4), (True, 2e-2)])
def test_torch_cuda_matches_onnxruntime_cpu(kitti_frame, fp16, tol):
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    x, sift = _inputs(kitti_frame)
    ref = create_backend('onnxruntime', str(shipped_weights('residual'))).run(x, sift, True)
    got = create_backend('torch', str(shipped_weights('residual')), device='cuda',
                         fp16=fp16).run(x, sift, True)
    for key in ref:
        assert np.abs(ref[key] - got[key]).max() < tol, key


def test_gpu_frontend_runs_eagerly_on_cpu_with_the_config(kitti_frame):
    """The config's limits reach the device code: top-k size, disparity range, temporal NN."""
    from hndesc_ros.features.gpu import GpuStereoFrontend
    left = np.ascontiguousarray(kitti_frame[100:300, 200:600])
    right = np.ascontiguousarray(np.roll(left, -5, axis=1))   # disparity 5 px everywhere
    cfg = Config(features=FeatureConfig(extractor='cnn', device='cpu', max_keypoints=300),
                 matching=MatchingConfig(stereo_max_disparity=40.0))
    fe = GpuStereoFrontend(cfg, *left.shape)
    out = fe.process(left, right)
    assert fe.graph is None and out['xy'].shape == (2, 300, 2)
    paired = out['stereo'] >= 0
    assert int(paired.sum()) > 50
    disp = out['xy'][0, paired, 0] - out['xy'][1, out['stereo'][paired], 0]
    assert bool(((disp > 0.5) & (disp <= 40.0)).all())
    assert bool((out['temporal'] < 0).all())              # first frame: nothing to match
    again = fe.process(left, right)
    assert int((again['temporal'] >= 0).sum()) > 50       # the same frame again
    with pytest.raises(ConfigError, match='sift'):        # no network, no detector head
        GpuStereoFrontend(Config(features=FeatureConfig(extractor='sift', device='cpu')), 8, 8)


@cuda
def test_gpu_frontend_graph_equals_eager(kitti_frame):
    from hndesc_ros.features.gpu import GpuStereoFrontend
    h, w = kitti_frame.shape
    cfg = Config(features=FeatureConfig(extractor='cnn', device='cuda', fp16=True))
    outs = []
    for graph in (False, True):
        fe = GpuStereoFrontend(cfg, h, w, graph=graph)
        outs.append(fe.process(kitti_frame, kitti_frame[:, ::-1].copy()))
    assert torch.equal(outs[0]['xy'], outs[1]['xy'])
    assert torch.equal(outs[0]['stereo'], outs[1]['stereo'])
    assert int((outs[1]['valid'][0]).sum()) > 500


def _has_tensorrt():
    try:
        import tensorrt  # noqa: F401
        return torch.cuda.is_available()
    except ImportError:
        return False


@pytest.mark.skipif(not _has_tensorrt(), reason='needs TensorRT and a CUDA GPU')
def test_tensorrt_matches_onnxruntime(kitti_frame, tmp_path):
    x, sift = _inputs(kitti_frame)
    ref = create_backend('onnxruntime', str(shipped_weights('residual'))).run(x, sift, True)
    got = create_backend('tensorrt', str(shipped_weights('residual'))).run(x, sift, True)
    for key in ref:  # fp16 engine: unit descriptors agree to 2e-2
        assert np.abs(ref[key] - got[key]).max() < 2e-2, key


def test_static_frontend_in_the_vo_pipeline_equals_the_cpu_path(kitti06):
    """With ``features.device: cuda`` the node runs the static GPU front end; here the same
    code runs eagerly on the CPU inside StereoFrontend and gives what the CPU path gives for
    the same model and settings (learned keypoints, CNN descriptors, descriptor stereo)."""
    from scipy.spatial import cKDTree

    from hndesc_ros.datasets.kitti import KittiSequence
    from hndesc_ros.vo.pipeline import StereoFrontend
    seq = KittiSequence(kitti06, 0, 3)
    cfg = Config(features=FeatureConfig(extractor='cnn', keypoints='learned', network_scale=1.0,
                                        device='cpu', max_keypoints=1000),
                 matching=MatchingConfig(stereo_method='descriptor'),
                 vo=VOConfig(klt_frames=0))  # the static front end extracts every pair
    cpu = StereoFrontend(seq.calib, cfg, static=False)
    static = StereoFrontend(seq.calib, cfg, static=True)
    assert static.static is not None and cpu.static is None
    fr = seq.frame(0)
    fc, uc, _ = cpu.stereo_features(fr.left, fr.right)
    fg, ug, timings = static.stereo_features(fr.left, fr.right)
    assert 'static_frontend' in timings
    dist, idx = cKDTree(fc.keypoints).query(fg.keypoints)
    assert (dist < 0.5).mean() > 0.99                          # the same keypoints
    assert np.abs(fg.descriptors - fc.descriptors[idx]).max() < 1e-4
    both = np.isfinite(ug) & np.isfinite(uc[idx])
    assert both.sum() > 0.9 * np.isfinite(uc).sum()            # the same stereo pairs ...
    assert (np.abs(ug[both] - uc[idx][both]) < 1.0).mean() > 0.99   # ... at the same u
    for k in range(3):                                         # the same tracking contract
        fr = seq.frame(k)
        oc = cpu.process(fr.left, fr.right, fr.stamp, k)
        og = static.process(fr.left, fr.right, fr.stamp, k)
        assert abs(len(og) - len(oc)) < 0.1 * len(oc)
        assert og.uv.dtype == oc.uv.dtype and og.track_ids.dtype == oc.track_ids.dtype
    assert np.isin(og.track_ids, np.arange(static.tracker.next_id)).all()
    assert static.tracker.lost == 0
