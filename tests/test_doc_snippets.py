"""Every Python snippet of the docs runs as printed.

The ```python blocks of README.md, configs/README.md and docs/*.md:

* A **config** (it assigns ``_base_``, ``model``, a dataloader, ...) starts
  with a comment naming its file, ``# configs/<folder>/<name>.py``. It is
  written there in a copy of ``configs/`` (so its relative ``_base_`` paths
  resolve as they would for a reader), loaded with mmengine's
  ``Config.fromfile``, and its model is built in the ``detr_plugin`` scope
  (pretrained initialisation off; ``load_from`` is not loaded). When the file
  it names exists, the snippet must load to the same config: the docs show
  the real file. A ``data_root`` the snippet sets must reach every dataset
  and evaluator (the pitfall configs/README.md explains).
* **Any other block** is executed in a folder laid out as after
  ``bash tools/demo.sh``: ``configs/``, a small shapes set at
  ``data/shapes/`` and a demo-config checkpoint (random weights) at
  ``work_dirs/demo/iter_4000.pth``.
* A block right after a ``<!-- snippet: skip (reason) -->`` line is skipped
  with that reason; use it only for a block that cannot run here.
"""
import glob
import json
import os
import os.path as osp
import re
import shutil
import subprocess
import sys

import pytest
from mmengine.config import Config
from mmengine.registry import DefaultScope

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DOCS = ['README.md', 'configs/README.md'] + sorted(
    osp.relpath(path, ROOT) for path in glob.glob(osp.join(ROOT, 'docs',
                                                           '*.md')))
BLOCK = re.compile(
    r'^(?:<!-- snippet: skip \((?P<reason>[^)]+)\) -->\n)?'
    r'```python\n(?P<code>.*?)^```', re.M | re.S)
CONFIG_KEY = re.compile(
    r'^(_base_|model|(train|val|test)_(dataloader|cfg|evaluator)|'
    r'optim_wrapper|param_scheduler|default_hooks|custom_hooks)\s*=', re.M)
CONFIG_PATH = re.compile(r'# (configs/\S+\.py)\s*\n')
DEMO_CONFIG = 'configs/demo/detr_r18_shapes.py'
DEMO_CHECKPOINT = 'work_dirs/demo/iter_4000.pth'


def python_blocks(doc: str):
    """``(line, code, skip_reason)`` of each ```python block of ``doc``."""
    with open(osp.join(ROOT, doc), encoding='utf-8') as f:
        text = f.read()
    for match in BLOCK.finditer(text):
        line = text.count('\n', 0, match.start('code')) + 1
        yield line, match.group('code'), match.group('reason')


def snippet_params(configs: bool):
    params = []
    for doc in DOCS:
        for line, code, reason in python_blocks(doc):
            if bool(CONFIG_KEY.search(code)) != configs:
                continue
            marks = [pytest.mark.skip(reason=reason)] if reason else []
            params.append(pytest.param(code, id=f'{doc}:{line}',
                                       marks=marks))
    return params


def test_the_docs_have_snippets():
    # guards the extraction: the README's balloon config and the tools' API
    # example must be found, or every test below would pass on nothing
    assert any('_base_' in code
               for _, code, _ in python_blocks('README.md'))
    assert snippet_params(configs=False)


def assert_data_root_reaches_datasets(cfg: Config) -> None:
    """A ``data_root`` the config sets is the one its datasets read."""
    if 'data_root' not in cfg:
        return
    for split in ('train', 'val', 'test'):
        loader = cfg.get(f'{split}_dataloader')
        if loader:
            assert loader.dataset.data_root == cfg.data_root, (
                f'{split}_dataloader.dataset.data_root is '
                f'{loader.dataset.data_root!r}, not data_root '
                f'{cfg.data_root!r}')
        evaluator = cfg.get(f'{split}_evaluator')
        if isinstance(evaluator, dict) and evaluator.get('ann_file'):
            assert evaluator.ann_file.startswith(cfg.data_root), (
                f'{split}_evaluator.ann_file {evaluator.ann_file!r} is not '
                f'under data_root {cfg.data_root!r}')


@pytest.fixture(scope='module')
def snippet_files(tmp_path_factory):
    """A copy of ``configs/`` with each config snippet written where its
    first line says; ``{code: path}``."""
    root = tmp_path_factory.mktemp('snippets')
    shutil.copytree(osp.join(ROOT, 'configs'), root / 'configs')
    files = {}
    for param in snippet_params(configs=True):
        code = param.values[0]
        named = CONFIG_PATH.match(code)
        if not named:
            continue  # the snippet's own test says so
        path = root / named.group(1)
        assert path not in files.values(), f'two snippets are {path}'
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(code, encoding='utf-8')
        files[code] = path
    return files


# Run in a fresh process, as tools/train.py is: after `import detr_plugin`
# (and the config's own custom_imports), which hook and dataset types of
# each config are still unknown in the detr_plugin scope?
UNRESOLVED_TYPES = '''
import json, sys
import detr_plugin
from mmengine.config import Config
from mmengine.registry import DefaultScope
from detr_plugin.registry import DATASETS, HOOKS
unresolved = {}
for path in sys.argv[1:]:
    try:
        cfg = Config.fromfile(path)
    except Exception:  # the test loads it again and shows why
        continue
    hooks = (list((cfg.get('default_hooks') or {}).values())
             + list(cfg.get('custom_hooks') or []))
    named = [(HOOKS, hook['type']) for hook in hooks if hook]
    for split in ('train', 'val', 'test'):
        loader = cfg.get(split + '_dataloader')
        if loader:
            named.append((DATASETS, loader['dataset']['type']))
    with DefaultScope.overwrite_default_scope('detr_plugin'):
        unresolved[path] = [name for registry, name in named
                            if isinstance(name, str) and
                            registry.get(name) is None]
print(json.dumps(unresolved))
'''


@pytest.fixture(scope='module')
def unresolved_types(snippet_files):
    paths = [str(path) for path in snippet_files.values()]
    done = subprocess.run([sys.executable, '-c', UNRESOLVED_TYPES, *paths],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize('code', snippet_params(configs=True))
def test_config_snippet_builds(code, snippet_files, unresolved_types):
    from detr_plugin.registry import MODELS
    named = CONFIG_PATH.match(code)
    assert named, ('a config snippet starts with a comment naming its file, '
                   '"# configs/<folder>/<name>.py"')
    path = named.group(1)
    cfg = Config.fromfile(str(snippet_files[code]))
    if osp.isfile(osp.join(ROOT, path)):
        printed = cfg.to_dict()
        real = Config.fromfile(osp.join(ROOT, path)).to_dict()
        differ = sorted(k for k in printed.keys() | real.keys()
                        if printed.get(k) != real.get(k))
        assert not differ, f'the docs show {path} with other {differ}'
    assert_data_root_reaches_datasets(cfg)
    unknown = unresolved_types.get(str(snippet_files[code]))
    assert not unknown, (f'{path} names {unknown}, which `import detr_plugin` '
                         'does not register')

    cfg.model.backbone.init_cfg = None  # no pretrained weights in tests
    with DefaultScope.overwrite_default_scope('detr_plugin'):
        model = MODELS.build(cfg.model)
    assert type(model).__name__ == cfg.model.type
    assert model.bbox_head.num_classes == cfg.model.bbox_head.num_classes


def test_child_data_root_alone_does_not_repoint_the_base(tmp_path):
    """What configs/README.md says mmengine does: the base's datasets keep
    the ``data_root`` they were loaded with."""
    base = osp.join(ROOT, 'configs', '_base_', 'datasets',
                    'coco_detection.py')
    child = tmp_path / 'child.py'
    child.write_text(f"_base_ = {base!r}\ndata_root = 'data/mycoco/'\n")
    cfg = Config.fromfile(str(child))
    assert cfg.data_root == 'data/mycoco/'
    assert cfg.train_dataloader.dataset.data_root == 'data/coco/'
    with pytest.raises(AssertionError, match='not data_root'):
        assert_data_root_reaches_datasets(cfg)


@pytest.fixture(scope='module')
def demo_workspace(tmp_path_factory):
    """A folder as ``bash tools/demo.sh`` leaves the repository: configs,
    the shapes set (small) and a checkpoint of the demo config."""
    import torch
    from mmengine.runner import save_checkpoint

    from synthetic_shapes import generate_shapes_dataset
    from detr_plugin.registry import MODELS
    workspace = tmp_path_factory.mktemp('after_demo')
    os.symlink(osp.join(ROOT, 'configs'), workspace / 'configs')
    info = generate_shapes_dataset(
        str(workspace / 'data' / 'shapes'), num_train=4, num_val=4,
        image_size=(64, 64), max_objects=3, size_range=(0.3, 0.6))
    cfg = Config.fromfile(osp.join(ROOT, DEMO_CONFIG))
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('detr_plugin'):
        model = MODELS.build(cfg.model)
    checkpoint = workspace / DEMO_CHECKPOINT
    checkpoint.parent.mkdir(parents=True)
    save_checkpoint(
        dict(state_dict=model.state_dict(),
             meta=dict(dataset_meta=dict(classes=info['classes']))),
        str(checkpoint))
    return workspace


@pytest.mark.parametrize('code', snippet_params(configs=False))
def test_snippet_runs(code, demo_workspace, monkeypatch, request):
    monkeypatch.chdir(demo_workspace)
    where = request.node.callspec.id  # DOC:LINE, in tracebacks
    exec(compile(code, where, 'exec'), {'__name__': '__main__'})
