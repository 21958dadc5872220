"""CUDA and TensorRT paths. These are the only tests skipped on machines without a GPU; they run
on the project's GPU machine (see README, "GPU path")."""
import numpy as np
import pytest
import torch

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


@cuda
def test_gpu_frontend_graph_equals_eager(kitti_frame):
    from hndesc_ros.features.gpu import GpuStereoFrontend
    h, w = kitti_frame.shape
    outs = []
    for graph in (False, True):
        fe = GpuStereoFrontend(str(shipped_weights('cnn')), h, w, 'cuda', fp16=True, graph=graph)
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
