"""Every checkpoint scheme is read without running code (issue 31, item 1):
mmengine's loaders of ``http(s)://``, ``torchvision://``, ``open-mmlab://``
and ``mmcls://`` went through ``torch.hub.load_state_dict_from_url`` with
``weights_only=False``, so a pickle payload in a downloaded (or hub-cached)
file ran, and the tool exited 0. Each case below puts a payload where the
scheme's loader finds it -- torch.hub's cache, no network -- and checks that
it is refused, naming the file, and that its code did not run."""
import os
import os.path as osp
import pickle
from urllib.parse import urlparse

import pytest
import torch
from helpers.configs import add_eval_split, tiny_train_config, write_config
from helpers.detector import write_tiny_detector
from helpers.tools import run_tool
from mmengine.runner import CheckpointLoader
from mmengine.runner import checkpoint as mmengine_checkpoint

from detr_plugin.checkpoint import (CheckpointReadError,
                                    UnsafeCheckpointError, use_safe_loading)


class Payload:
    """Unpickling it writes ``marker`` (what a malicious file would do)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, 'w'))


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """torch.hub's cache in ``tmp_path`` (``$TORCH_HOME``), the safe
    loaders registered; yields ``put(url, payload=True)``, which writes a
    checkpoint -- with a payload, or a plain state dict -- where the
    download of ``url`` would land, and the marker a payload would
    write."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    marker = str(tmp_path / 'payload_ran')
    use_safe_loading()

    def put(url: str, payload: bool = True) -> str:
        path = osp.join(str(tmp_path / 'torch'), 'hub', 'checkpoints',
                        osp.basename(urlparse(url).path))
        os.makedirs(osp.dirname(path), exist_ok=True)
        torch.save(dict(state_dict=dict(w=torch.ones(2)),
                        meta=Payload(marker) if payload else {}), path)
        return path
    yield put, marker
    assert not osp.exists(marker), 'the payload ran'


def expect_refused(filename, path):
    with pytest.raises(UnsafeCheckpointError, match=(
            rf'refusing to load {path}.*could run arbitrary code')):
        CheckpointLoader.load_checkpoint(filename, map_location='cpu')


def test_https_url_in_the_hub_cache(hub):
    put, _ = hub
    url = 'https://example.invalid/ckpt/detr_x.pth'
    expect_refused(url, put(url))
    put(url, payload=False)  # a plain checkpoint loads
    loaded = CheckpointLoader.load_checkpoint(url, map_location='cpu')
    assert torch.equal(loaded['state_dict']['w'], torch.ones(2))


def test_torchvision_scheme(hub, monkeypatch):
    put, _ = hub
    url = 'https://download.pytorch.org/models/resnet50-0676ba61.pth'
    # mmengine reads torchvision's table of URLs (no torchvision here)
    monkeypatch.setattr(mmengine_checkpoint, 'get_torchvision_models',
                        lambda: dict(resnet50=url))
    for scheme in ('torchvision://', 'modelzoo://'):
        expect_refused(f'{scheme}resnet50', put(url))


def test_open_mmlab_and_mmcls_schemes(hub):
    put, _ = hub
    url = mmengine_checkpoint.get_external_models()['resnet50_v1c']
    for scheme in ('open-mmlab://', 'openmmlab://'):
        expect_refused(f'{scheme}resnet50_v1c', put(url))
    name, url = next(iter(mmengine_checkpoint.get_mmcls_models().items()))
    expect_refused(f'mmcls://{name}', put(url))


def test_local_file_and_pavi(hub, tmp_path):
    put, marker = hub
    path = str(tmp_path / 'local.pth')
    torch.save(dict(meta=Payload(marker)), path)
    expect_refused(path, path)
    with pytest.raises(UnsafeCheckpointError, match='pavi:// checkpoints'):
        CheckpointLoader.load_checkpoint('pavi://x/y.pth')


def test_an_unreachable_url_says_to_download_it(hub):
    with pytest.raises(CheckpointReadError, match=(
            r'cannot download the checkpoint http://127\.0\.0\.1:9/x\.pth '
            r'\(.*\)\. Fix: download it where there is network and give its '
            r'local path instead')):
        CheckpointLoader.load_checkpoint('http://127.0.0.1:9/x.pth')


def test_the_tools_refuse_a_payload_behind_a_url(hub, shapes, tmp_path):
    """``tools/test.py CONFIG URL``, ``train.py`` with ``load_from=URL``
    and ``infer.py CONFIG URL ...``: one error line, exit status 1, and the
    payload did not run (the subprocesses share the hub cache)."""
    put, marker = hub
    url = 'https://example.invalid/ckpt/payload.pth'
    path = put(url)
    config, _, images = write_tiny_detector(tmp_path)
    env = dict(TORCH_HOME=str(tmp_path / 'torch'))
    train_cfg = write_config(tiny_train_config(shapes, load_from=url),
                             str(tmp_path / 'train.py'))
    test_cfg = write_config(add_eval_split(tiny_train_config(shapes), shapes,
                                           'test'), str(tmp_path / 'test.py'))
    for args in (['test.py', test_cfg, url, '--work-dir',
                  str(tmp_path / 'w')],
                 ['train.py', train_cfg, '--work-dir', str(tmp_path / 't')],
                 ['infer.py', config, url, images, '--out-dir',
                  str(tmp_path / 'out')]):
        proc = run_tool(args, str(tmp_path), check=False, **env)
        assert proc.returncode == 1, proc.out[-2000:]
        assert proc.out.strip().splitlines()[-1].startswith(
            f'error: refusing to load {path}'), proc.out[-2000:]
        assert not osp.exists(marker)


def test_a_pickle_payload_needs_no_network_to_be_written():
    """(The fixture's payload is a real one: plain unpickling runs it.)"""
    import tempfile
    with tempfile.TemporaryDirectory() as folder:
        marker = osp.join(folder, 'ran')
        pickle.loads(pickle.dumps(Payload(marker)))
        assert osp.exists(marker)
