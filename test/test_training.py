"""Training on real images: loss decreases, checkpoints resume at the same step, evaluation
folders are refused; export produces an ONNX that matches PyTorch."""
import csv
import subprocess
import sys
from pathlib import Path

import torch

from conftest import shared_path

ROOT = Path(__file__).resolve().parent.parent
TRAIN = [sys.executable, str(ROOT / 'training' / 'train.py')]
SMALL = ['--set', 'pairs.height=128', 'pairs.width=160', 'pairs.keypoints=128', 'val_every=1000',
         'ckpt_every=4', 'log_every=1', 'warmup=2', 'workers=0']


def rows(out):
    with open(out / 'log.csv') as f:
        return list(csv.DictReader(f))


def test_few_steps_decrease_loss_and_resume(tmp_path):
    images = shared_path('images', 'sacre_coeur')
    out = tmp_path / 'run'
    base = TRAIN + ['--images', str(images), '--out', str(out), '--batch-size', '4',
                    '--lr', '0.003'] + SMALL
    r = subprocess.run(base + ['--steps', '12', '--variant', 'residual-small'],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    log = rows(out)
    first = sum(float(x['loss']) for x in log[:3]) / 3
    last = sum(float(x['loss']) for x in log[-3:]) / 3
    assert last < first, (first, last)
    blob = torch.load(out / 'last.pt', weights_only=False)
    assert blob['step'] == 12 and 'optimizer' in blob
    assert (out / 'hndesc_residual-small.pt').exists()
    # resume continues from the saved step and runs exactly the remaining steps
    r = subprocess.run(base + ['--steps', '16', '--variant', 'residual-small', '--resume'],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert 'resumed from' in r.stdout + r.stderr and 'at step 12' in r.stdout + r.stderr
    log = rows(out)
    assert [int(x['step']) for x in log][-4:] == [13, 14, 15, 16]
    assert torch.load(out / 'last.pt', weights_only=False)['step'] == 16


def test_evaluation_folders_are_refused(tmp_path):
    for folder in (shared_path('hpatches'), shared_path('kitti', 'sequences', '06')):
        r = subprocess.run(TRAIN + ['--images', str(folder), '--out', str(tmp_path)],
                           capture_output=True, text=True)
        assert r.returncode == 2 and 'evaluation data' in r.stderr


def test_export_onnx_matches_pytorch(tmp_path, kitti06):
    r = subprocess.run([sys.executable, str(ROOT / 'training' / 'export.py'), '--out',
                        str(tmp_path), '--image', str(kitti06 / 'image_0' / '000005.png')],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / 'hndesc_residual.onnx').exists()
    assert 'max |torch - onnxruntime|' in r.stdout
    assert 'TensorRT' in r.stdout  # built, or one line saying why not
