"""Backends: same contract, parity on a real KITTI frame, clear errors for missing ones."""
import numpy as np
import pytest

from hndesc_ros.errors import BackendUnavailable, ConfigError
from hndesc_ros.features.extractor import prepare_input
from hndesc_ros.features.sift import Sift
from hndesc_ros.inference import REGISTRY, create_backend
from hndesc_ros.models import shipped_weights


@pytest.mark.parametrize('variant', ['residual', 'cnn'])
def test_torch_and_onnxruntime_agree_on_real_frame(kitti_frame, variant):
    x = prepare_input(kitti_frame, 1)
    _, sift = Sift(500).describe(kitti_frame, Sift(500).detect(kitti_frame))
    outs = []
    for name in ('torch', 'onnxruntime'):
        be = create_backend(name, str(shipped_weights(variant)))
        assert be.name == name
        outs.append(be.run(x, sift if be.model_cfg.use_sift else None, with_scores=True))
    a, b = outs
    assert set(a) == set(b)
    assert a['dense'].shape == (1, a['dense'].shape[1], 47, 154)  # 370x1226 -> 376x1232, / 8
    for key in a:
        assert np.abs(a[key] - b[key]).max() < 1e-4, key


def test_dynamic_size_onnx(kitti_frame):
    be = create_backend('onnxruntime', str(shipped_weights('residual')))
    out = be.run(prepare_input(kitti_frame[:200, :300], 1), np.zeros((0, 128), np.float32))
    assert out['dense'].shape[2:] == (25, 38) and out['refined'].shape == (0, 128)


def test_tensorrt_slot_exists_and_fails_clearly_without_it():
    assert 'tensorrt' in REGISTRY
    try:
        import tensorrt  # noqa: F401
        pytest.skip('tensorrt is installed here: covered by the GPU tests on the device')
    except ImportError:
        pass
    with pytest.raises(BackendUnavailable, match='install'):
        create_backend('tensorrt', str(shipped_weights('residual')))


def test_unknown_backend():
    with pytest.raises(ConfigError, match='unknown backend'):
        create_backend('openvino', 'x.pt')


def test_refine_alone_equals_refine_in_the_full_graph(kitti_frame):
    x, sift = prepare_input(kitti_frame, 1), Sift(200)
    _, desc = sift.describe(kitti_frame, sift.detect(kitti_frame))
    for name in ('torch', 'onnxruntime'):
        be = create_backend(name, str(shipped_weights('residual')))
        full = be.run(x, desc)['refined']
        assert np.abs(be.refine(desc) - full).max() < 1e-5
        assert be.refine(desc[:0]).shape == (0, 128)


@pytest.mark.parametrize('variant', ['residual', 'residual-small', 'cnn'])
def test_shipped_onnx_is_the_export_of_the_shipped_checkpoint(kitti_frame, variant):
    """The runtime runs the shipped .onnx (no torch); it must be this very .pt, exported."""
    import onnx

    from hndesc_ros.inference.onnx_export import checkpoint_digest
    pt, onnx_path = shipped_weights(variant, 'pt'), shipped_weights(variant, 'onnx')
    meta = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    assert meta['hndesc_checkpoint_sha1'] == checkpoint_digest(pt), \
        f'{onnx_path} is stale: python training/export.py --checkpoint {pt} --out {pt.parent}'
    crop = kitti_frame[:160, :480]
    x, sift = prepare_input(crop, 1), Sift(300)(crop).descriptors
    a = create_backend('torch', str(pt)).run(x, sift, with_scores=True)
    b = create_backend('onnxruntime', str(onnx_path)).run(x, sift, with_scores=True)
    assert set(a) == set(b)
    for key in a:
        assert np.abs(a[key] - b[key]).max() < 1e-4, key


def test_shipped_int8_model_is_the_quantised_shipped_checkpoint(kitti06):
    """The int8 twin (default on ONNX Runtime) carries the checkpoint's hash and keeps the
    dense descriptors within a cosine of 0.99 of the fp32 export on a KITTI 06 frame at the
    VO's network scale (calibrated on KITTI 00, training/export.py --int8)."""
    import cv2
    import onnx

    from hndesc_ros.config import FeatureConfig
    from hndesc_ros.features.extractor import resolve_weights
    from hndesc_ros.features.image import read_image
    from hndesc_ros.inference.onnx_export import checkpoint_digest
    pt, int8 = shipped_weights('residual-small', 'pt'), shipped_weights('residual-small',
                                                                        'int8.onnx')
    meta = {p.key: p.value for p in onnx.load(str(int8)).metadata_props}
    assert meta['hndesc_checkpoint_sha1'] == checkpoint_digest(pt)
    assert 'int8' in meta['hndesc_int8']
    img = read_image(kitti06 / 'image_0' / '000025.png')
    scale = FeatureConfig().network_scale
    size = (round(img.shape[1] * scale), round(img.shape[0] * scale))
    x = prepare_input(cv2.resize(img, size, interpolation=cv2.INTER_AREA), 1)
    a = create_backend('onnxruntime', str(shipped_weights('residual-small', 'onnx'))).run(x)
    b = create_backend('onnxruntime', str(int8)).run(x)
    cos = np.sum(a['dense'] * b['dense'], axis=1)
    assert cos.mean() > 0.99 and np.percentile(cos, 1) > 0.9
    assert resolve_weights(FeatureConfig()) == str(int8)
    assert resolve_weights(FeatureConfig(int8=False)).endswith('hndesc_residual-small.onnx')
    assert resolve_weights(FeatureConfig(extractor='residual')).endswith('hndesc_residual.onnx')
    assert resolve_weights(FeatureConfig(backend='torch')).endswith('.pt')
