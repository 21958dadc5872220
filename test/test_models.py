"""The networks: shapes, variants, checkpoint I/O, SuperPoint key mapping, dense sampling."""
import numpy as np
import pytest
import torch

from hndesc_ros.models import build_model, load_checkpoint, save_checkpoint, shipped_weights
from hndesc_ros.models.checkpoint import load_superpoint_into
from hndesc_ros.models.sampling import sample_dense_numpy, sample_dense_torch


@pytest.mark.parametrize('variant,dim', [('residual', 256), ('cnn', 256), ('residual-small', 128)])
def test_variant_shapes(variant, dim):
    model = build_model(variant).eval()
    assert model.cfg.descriptor_dim == dim
    with torch.no_grad():
        out = model(torch.rand(1, 1, 64, 96), torch.rand(5, 128))
    assert out['dense'].shape == (1, model.cfg.cnn_dim, 8, 12)
    assert torch.allclose(out['dense'].norm(dim=1), torch.ones(1, 8, 12), atol=1e-5)
    assert out['scores'].shape == (1, 64, 96)
    if model.cfg.use_sift:
        assert out['refined'].shape == (5, model.cfg.refine_dim)
    else:
        assert 'refined' not in out


def test_refine_mlp_is_128_256_256_128():
    f = build_model('residual').f
    shapes = [tuple(layer.weight.shape) for layer in f.layers]
    assert shapes == [(256, 128), (256, 256), (128, 256)]


def test_checkpoint_roundtrip_keeps_variant_and_config(tmp_path):
    model = build_model('residual-small').eval()
    path = save_checkpoint(tmp_path / 'm.pt', model, {'note': 'x'})
    loaded, blob = load_checkpoint(path)
    assert loaded.cfg == model.cfg and blob['meta']['note'] == 'x'
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded(x)['dense'], model(x)['dense'])


def test_shipped_weights_exist_and_load():
    for variant in ('residual', 'cnn', 'residual-small'):
        path = shipped_weights(variant)
        assert path.stat().st_size < 3_000_000
        model, blob = load_checkpoint(path)
        assert model.cfg.variant == variant and blob['meta']['steps'] > 0


def test_superpoint_checkpoint_keys_map_into_h(tmp_path):
    # a SuperPoint-style state dict (original layer names, 'module.' prefix, 256-D head)
    ref = build_model('cnn').eval()
    sd = {}
    for name, tensor in ref.h.state_dict().items():
        if name.endswith(('running_mean', 'running_var', 'num_batches_tracked')) or \
                '.1.' in name:
            continue
        sd['module.' + name.replace('.0.', '.')] = torch.randn_like(tensor)
    torch.save(sd, tmp_path / 'superpoint_v1.pth')
    model = load_superpoint_into(tmp_path / 'superpoint_v1.pth', 'cnn')
    got = model.h.conv1a[0].weight
    assert torch.equal(got, sd['module.conv1a.weight'])
    assert torch.equal(model.h.convDb.weight, sd['module.convDb.weight'])


def test_sampling_pixel_centre_convention():
    # map whose value at cell (i, j) is (j, i): sampling at pixel 8j+3.5 must return exactly j
    h, w = 5, 7
    jj, ii = np.meshgrid(np.arange(w), np.arange(h))
    dense = np.stack([jj, ii, np.full_like(jj, 100)]).astype(np.float32)
    kp = np.array([[8 * 3 + 3.5, 8 * 2 + 3.5], [8 * 1 + 3.5 + 4, 8 * 0 + 3.5]], np.float32)
    raw = sample_dense_numpy(dense, kp) * np.linalg.norm(
        [[3, 2, 100], [1.5, 0, 100]], axis=1, keepdims=True)
    assert np.allclose(raw[0], [3, 2, 100], atol=1e-3)
    assert np.allclose(raw[1], [1.5, 0, 100], atol=1e-3)  # half-way between cells 1 and 2


def test_sampling_numpy_and_torch_agree():
    rng = np.random.default_rng(0)
    dense = rng.normal(size=(16, 6, 9)).astype(np.float32)
    kp = rng.uniform(-5, 80, size=(50, 2)).astype(np.float32)  # includes out-of-range points
    a = sample_dense_numpy(dense, kp)
    b = sample_dense_torch(torch.from_numpy(dense)[None], torch.from_numpy(kp)[None])[0]
    assert np.allclose(a, b.numpy(), atol=1e-5)
