"""Checkpoints, resume and the runner's log through ``tools/train.py``.

torch >= 2.6 loads checkpoints with ``weights_only=True``; the types mmengine
writes are allow-listed by :mod:`detr_plugin.checkpoint` and
nothing else. Training 4 iterations in one run must give bit-identical
weights, optimizer state, LR schedule and logged history to a run that stopped
after saving iteration 2 and was continued with ``--resume``.
"""
import os
import os.path as osp
import pickle
import shutil

import mmcv
import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner import CheckpointLoader
from helpers.configs import TINY_CONFIG
from helpers.data import make_shapes, truncate_file
from helpers.tools import load_checkpoint, read_log, run_tool

import detr_plugin  # noqa: F401  (its loader of local checkpoint files)

# one of the 5 training images has no box: filter_empty_gt drops it
FILTER_EMPTY = 'train_dataloader.dataset.filter_cfg.filter_empty_gt=True'


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """Work dirs of a 4-iteration run and of a run resumed after 2."""
    root = str(tmp_path_factory.mktemp('resume'))
    make_shapes(osp.join(root, 'data', 'shapes'), num_train=5,
                empty_fraction=0.2)
    # default work dir: ./work_dirs/<config name>
    run_tool(['train.py', TINY_CONFIG, '--cfg-options', FILTER_EMPTY], root)
    straight = osp.join(root, 'work_dirs', 'detr_tiny_shapes')
    # a run interrupted after saving iteration 2, then `--resume` (auto)
    resumed = osp.join(root, 'resumed')
    os.makedirs(resumed)
    shutil.copy(osp.join(straight, 'iter_2.pth'), resumed)
    with open(osp.join(resumed, 'last_checkpoint'), 'w') as f:
        f.write(osp.join(resumed, 'iter_2.pth'))
    second = run_tool(['train.py', TINY_CONFIG, '--work-dir', resumed,
                       '--resume', '--cfg-options', FILTER_EMPTY], root)
    return dict(root=root, straight=straight, resumed=resumed,
                second_log=second.out)


def assert_ends_with_error(proc, message: str) -> None:
    """The tool failed with ``error: message...`` as its last line (exit
    status 1), not a traceback."""
    assert proc.returncode == 1, proc.out[-3000:]
    last = proc.out.strip().splitlines()[-1]
    assert last.startswith('error: ' + message), proc.out[-3000:]
    assert 'Traceback' not in proc.out


def assert_same_tensors(a, b, what):
    """Nested dicts / lists of tensors and numbers, bit for bit."""
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), what
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), what
        for key in a:
            assert_same_tensors(a[key], b[key], f'{what}.{key}')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), what
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tensors(x, y, f'{what}[{i}]')
    else:
        assert a == b, what


def test_resume_continues_exactly(runs):
    assert 'Auto resumed from the latest checkpoint' in runs['second_log']
    assert 'Advance dataloader 2 steps' in runs['second_log']
    straight = load_checkpoint(osp.join(runs['straight'], 'iter_4.pth'))
    resumed = load_checkpoint(osp.join(runs['resumed'], 'iter_4.pth'))
    assert straight['meta']['iter'] == resumed['meta']['iter'] == 4
    assert_same_tensors(straight['state_dict'], resumed['state_dict'],
                        'state_dict')
    assert_same_tensors(straight['optimizer'], resumed['optimizer'],
                        'optimizer')
    assert straight['optimizer']['state'][0]['step'] == 4
    assert_same_tensors(straight['param_schedulers'],
                        resumed['param_schedulers'], 'param_schedulers')
    # logged history: the LR (of the first group, the backbone's 0.1 x 1e-3)
    # dropped once, before iteration 4, and every step's loss is the same
    history = [ckpt['message_hub']['log_scalars'] for ckpt in (straight,
                                                               resumed)]
    for scalars in history:
        assert scalars['train/lr'].data[0].tolist() == pytest.approx(
            [1e-4, 1e-4, 1e-4, 1e-5])
    assert history[0]['train/loss'].data[0].tolist() == \
        history[1]['train/loss'].data[0].tolist()


def test_log_shows_eta_losses_and_filtered_images(runs):
    log = read_log(runs['straight'])
    for key in ('eta: ', 'loss: ', 'loss_cls: ', 'loss_bbox: ', 'loss_iou: ',
                'd0.loss_cls: ', 'class_error: ', 'cardinality_error: '):
        assert key in log, key
    assert 'kept 4 of 5 images; filtered out 1 without boxes' in log


def test_test_tool_evaluates_dumps_and_draws(runs, tmp_path):
    out = tmp_path / 'results.pkl'
    proc = run_tool(['test.py', TINY_CONFIG,
                     osp.join(runs['straight'], 'iter_4.pth'),
                     '--work-dir', str(tmp_path), '--out', str(out),
                     '--show-dir', 'vis'], runs['root'])
    log = proc.out
    assert 'Average Precision  (AP) @[ IoU=0.50:0.95' in log  # COCO table
    assert 'coco/bbox_mAP' in log
    with open(out, 'rb') as f:
        results = pickle.load(f)
    assert len(results) == 2  # the two val images
    assert results[0]['pred_instances']['bboxes'].shape == (10, 4)
    drawn = sorted(tmp_path.glob('*/vis/*.jpg'))
    assert len(drawn) == 2
    # ground truth and predictions side by side: twice the image's width
    assert mmcv.imread(str(drawn[0])).shape == (64, 128, 3)


class Payload:
    """What a malicious checkpoint pickles: a call to os.system."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}', )


def bad_checkpoints(folder):
    """``{kind: path}``: a malicious, a truncated, an empty and a text file.
    """
    paths = {kind: osp.join(folder, f'{kind}.pth')
             for kind in ('malicious', 'truncated', 'empty', 'text')}
    torch.save(dict(state_dict={}, meta=dict(payload=Payload(
        osp.join(folder, 'code_ran')))), paths['malicious'])
    torch.save(dict(state_dict={'w': torch.zeros(1000)}), paths['truncated'])
    truncate_file(paths['truncated'], 0.5)
    open(paths['empty'], 'wb').close()
    with open(paths['text'], 'w') as f:
        f.write('not a checkpoint')
    return paths


def test_bad_checkpoints_are_named_without_suggesting_unsafe_loading(
        tmp_path):
    """mmengine's loader of local files (``load_from``, ``--resume``,
    ``tools/test.py``, mmdet's ``init_detector``) is ``safe_load``: it
    names the file and what it refused, never torch's ``weights_only=False``
    suggestion, and runs no code (issue 14, item 10), once the tools'
    ``use_safe_loading()`` installed it."""
    from detr_plugin.checkpoint import use_safe_loading
    use_safe_loading()
    paths = bad_checkpoints(str(tmp_path))
    with pytest.raises(pickle.UnpicklingError) as error:
        CheckpointLoader.load_checkpoint(paths['malicious'])
    assert str(error.value).startswith(
        f'refusing to load {paths["malicious"]} as a checkpoint: it pickles '
        f'{os.system.__module__}.system, which is not on the allow-list '
        "(mmengine's types, detr_plugin.checkpoint); unpickling "
        'it could run arbitrary code.')
    assert 'weights_only' not in str(error.value)
    for kind in ('truncated', 'empty'):
        with pytest.raises(OSError) as error:
            CheckpointLoader.load_checkpoint(paths[kind])
        assert str(error.value).startswith(
            f'cannot load {paths[kind]} as a checkpoint: the file is '
            'truncated or not a PyTorch checkpoint ('), kind
        assert 'weights_only' not in str(error.value)
    with pytest.raises(pickle.UnpicklingError) as error:
        CheckpointLoader.load_checkpoint(paths['text'])
    assert str(error.value).startswith(
        f'refusing to load {paths["text"]} as a checkpoint: its pickle holds '
        'what a safe load refuses (Unsupported operand 110): not a PyTorch '
        'checkpoint, or one that could run code.')
    assert 'weights_only' not in str(error.value)
    assert not (tmp_path / 'code_ran').exists()


@pytest.mark.parametrize('kind,args', [
    ('malicious', ['train.py', TINY_CONFIG, '--resume', '{ckpt}']),
    ('truncated', ['train.py', TINY_CONFIG, '--cfg-options',
                   'load_from={ckpt}']),
    ('truncated', ['test.py', TINY_CONFIG, '{ckpt}']),
    ('malicious', ['infer.py', TINY_CONFIG, '{ckpt}',
                   'data/shapes/val/000001.jpg']),
], ids=['resume', 'load_from', 'test', 'infer'])
def test_every_tool_names_a_bad_checkpoint(runs, tmp_path, kind, args):
    ckpt = bad_checkpoints(str(tmp_path))[kind]
    proc = run_tool([a.format(ckpt=ckpt) for a in args] + (
        [] if args[0] == 'infer.py' else ['--work-dir', str(tmp_path)]),
        runs['root'], check=False)
    assert_ends_with_error(proc, f'refusing to load {ckpt} as a checkpoint: '
                           'it pickles' if kind == 'malicious' else
                           f'cannot load {ckpt} as a checkpoint: the file '
                           'is truncated')
    assert 'weights_only' not in proc.out
    assert 'Iter(train)' not in proc.out
    assert not (tmp_path / 'code_ran').exists()


@pytest.mark.parametrize('args,flag', [
    (['train.py', TINY_CONFIG, '--resume', '{ckpt}'], '--resume'),
    (['train.py', TINY_CONFIG, '--cfg-options', 'load_from={ckpt}'],
     'load_from'),
    (['test.py', TINY_CONFIG, '{ckpt}'], 'CHECKPOINT'),
    (['infer.py', TINY_CONFIG, '{ckpt}', 'data/shapes/val/000001.jpg'],
     'CHECKPOINT'),
    (['convert_checkpoint.py', '--from', 'mmdet', '{ckpt}', 'out.pth'],
     'SRC'),
], ids=['resume', 'load_from', 'test', 'infer', 'convert'])
def test_a_missing_checkpoint_stops_a_tool_before_it_builds(runs, tmp_path,
                                                            args, flag):
    """mmengine found it missing only when loading, after building the
    runner and logging its config (test.py, train.py), with a traceback."""
    ckpt = str(tmp_path / 'epoch_12.pth')
    proc = run_tool([a.format(ckpt=ckpt) for a in args] + (
        ['--work-dir', str(tmp_path)] if args[0] in ('train.py', 'test.py')
        else []), runs['root'], check=False)
    assert_ends_with_error(proc, f'{flag} {ckpt}: no such file. Fix: give '
                           'the path of a .pth file')
    assert 'Config:' not in proc.out  # the runner's log of the config


def test_resume_in_an_empty_work_dir_says_it_starts_from_scratch(runs,
                                                                 tmp_path):
    """mmengine logs "Auto resumed from the latest checkpoint None" and
    trains from scratch (issue 14, item 10)."""
    work = str(tmp_path / 'new')
    proc = run_tool(['train.py', TINY_CONFIG, '--work-dir', work, '--resume',
                     '--cfg-options', 'train_cfg.max_iters=1'], runs['root'])
    assert f'--resume: no checkpoint found in {work} (no last_checkpoint, ' \
        'no complete iter_*.pth or epoch_*.pth): training starts from ' \
        'scratch.' in proc.out
    assert 'Iter(train) [1/1]' in proc.out


@pytest.mark.parametrize('tool', ['test', 'resume'])
def test_a_checkpoint_of_another_class_count_is_refused(runs, tmp_path,
                                                        tool):
    """tools/test.py: mmengine warned "size mismatch", evaluated a random
    classifier and exited 0 (issue 14, item 6); train.py --resume: loaded
    it with that warning, then failed inside Adam at the first step ("The
    size of tensor a (4) must match ..."). Both refuse, naming both shapes
    and the likely fix."""
    ckpt = osp.join(runs['straight'], 'iter_4.pth')  # 3 classes
    split, args = ('test', ['test.py', TINY_CONFIG, ckpt]) if tool == 'test' \
        else ('train', ['train.py', TINY_CONFIG, '--resume', ckpt])
    proc = run_tool(args + [
        '--work-dir', str(tmp_path), '--cfg-options',
        'model.bbox_head.num_classes=1',
        f'{split}_dataloader.dataset.metainfo.classes=[circle]'],
        runs['root'], check=False)
    assert_ends_with_error(
        proc, ('--resume: ' if tool == 'resume' else '') +
        f'the checkpoint {ckpt} does not fit the model of the config: ')
    assert f'the checkpoint {ckpt} does not fit the model of the config: ' \
        'its classifier bbox_head.fc_cls.weight is (4, 32), the model\'s ' \
        '(2, 32): 3 classes in the checkpoint, 1 in the config' in proc.out
    assert 'Fix: use the config it was trained with, or set ' \
        'model.bbox_head.num_classes=3 and metainfo.classes' in proc.out
    if tool == 'test':
        assert 'coco/bbox_mAP' not in proc.out
    else:
        assert f'--resume: the checkpoint {ckpt}' in proc.out
        assert '(--resume continues the run the checkpoint is of: use its ' \
            'config, or start a new run from it with load_from)' in proc.out
        assert 'Iter(train)' not in proc.out


def test_test_tool_refuses_a_checkpoint_without_some_layers(runs, tmp_path):
    """A checkpoint without the decoder (another model's, or a part of one):
    mmengine warned "missing keys", evaluated a random decoder and exited 0;
    tools/test.py refuses, naming the modules it lacks and the fix."""
    loaded = load_checkpoint(osp.join(runs['straight'], 'iter_4.pth'))
    state_dict = loaded['state_dict']
    dropped = [k for k in state_dict if k.startswith('decoder.layers.')]
    for key in dropped:
        del state_dict[key]
    ckpt = str(tmp_path / 'no_decoder.pth')
    torch.save(loaded, ckpt)
    proc = run_tool(['test.py', TINY_CONFIG, ckpt, '--work-dir',
                     str(tmp_path)], runs['root'], check=False)
    assert_ends_with_error(proc, f'the checkpoint {ckpt} does not fit')
    assert f'the checkpoint {ckpt} does not fit the model of the config: it ' \
        f"lacks {len(dropped)} of the model's tensors (in decoder.layers: " \
        f'{len(dropped)}; e.g. {dropped[0]}), which would keep their random ' \
        'initial values' in proc.out
    assert 'coco/bbox_mAP' not in proc.out


def test_only_history_buffer_statistics_may_be_fetched(tmp_path):
    """mmengine pickles ``getattr(HistoryBuffer, 'min')`` etc.; any other
    ``getattr`` in a checkpoint is refused."""
    from detr_plugin.checkpoint import safe_load
    path = str(tmp_path / 'getattr.pth')
    torch.save(dict(ok=HistoryBuffer.mean), path)
    assert safe_load(path)['ok'] is HistoryBuffer.mean
    torch.save(dict(bad=HistoryBuffer.update), path)
    with pytest.raises(pickle.UnpicklingError, match="'update'"):
        safe_load(path)


def test_misfit_message_names_the_successors_classifiers():
    """A successor's sigmoid classifiers (one per decoder layer, no
    no-object row) are named as the classifier; other tensors of another
    shape are counted as another model's (issue 14, item 6)."""
    from detr_plugin.checkpoint import misfit_message
    text = misfit_message('x.pth', [
        ('bbox_head.cls_branches.0.weight', (80, 256), (3, 256)),
        ('bbox_head.cls_branches.0.bias', (80, ), (3, )),
        ('query_embedding.weight', (300, 256), (100, 256))], num_classes=3)
    assert text.startswith(
        'the checkpoint x.pth does not fit the model of the config: its '
        'classifier bbox_head.cls_branches.0.weight is (80, 256), the '
        "model's (3, 256): 80 classes in the checkpoint, 3 in the config")
    assert text.endswith(
        '1 other tensors differ in shape (e.g. query_embedding.weight: '
        '(300, 256) in the checkpoint, (100, 256) in the model): it is of '
        'another model. Fix: use the config it was trained with.')


def test_missing_tensors_are_counted_by_module():
    """Tensors the checkpoint lacks are counted under their module (the
    first two name parts, most first); BN's step counters do not count."""
    from detr_plugin.checkpoint import misfit_message, missing_tensors
    ours = dict.fromkeys([
        'backbone.conv1.weight', 'backbone.bn1.num_batches_tracked',
        'decoder.layers.0.ffn.weight', 'decoder.layers.1.ffn.weight',
        'bbox_head.fc_cls.weight'])
    missing = missing_tensors({'bbox_head.fc_cls.weight': None}, ours)
    assert missing == ['backbone.conv1.weight', 'decoder.layers.0.ffn.weight',
                       'decoder.layers.1.ffn.weight']
    assert misfit_message('x.pth', [], 1, missing) == (
        'the checkpoint x.pth does not fit the model of the config: it lacks '
        "3 of the model's tensors (in decoder.layers: 2, backbone.conv1: 1; "
        'e.g. backbone.conv1.weight), which would keep their random initial '
        'values: it holds another model, or only a part of one (e.g. a '
        'backbone). Fix: use a checkpoint trained with this config, or the '
        'config it was trained with.')


def test_a_fine_tuning_configs_hook_leaves_a_resume_to_the_refusal():
    """A config with AdaptCheckpointHook (the balloon fine-tuning one) reset
    the misfit classifier of a resumed checkpoint to the model's own, so
    the resume passed the refusal and failed inside Adam at the first step;
    the hook leaves a resume alone and AtomicCheckpointHook refuses."""
    from types import SimpleNamespace

    from detr_plugin.engine.hooks import (AdaptCheckpointHook,
                                          AtomicCheckpointHook)
    from mmdet_reference import build_plugin_model
    from helpers.configs import tiny_config
    model = build_plugin_model(tiny_config(num_classes=1))
    state_dict = dict(model.state_dict(), **{
        'bbox_head.fc_cls.weight': torch.zeros(4, 32),
        'bbox_head.fc_cls.bias': torch.zeros(4)})  # a 3-class run's
    runner = SimpleNamespace(model=model, _resume=True, _load_from='r.pth',
                             cfg=dict(load_from='r.pth'), work_dir='w')
    AdaptCheckpointHook().after_load_checkpoint(
        runner, dict(state_dict=state_dict))
    assert state_dict['bbox_head.fc_cls.bias'].shape == (4, )  # not reset
    with pytest.raises(ValueError, match=r'--resume: the checkpoint r\.pth '
                       r'does not fit .* is \(4, 32\), the model\'s '
                       r'\(2, 32\)'):
        AtomicCheckpointHook(interval=1).after_load_checkpoint(
            runner, dict(state_dict=state_dict))


def test_fine_tuning_resets_every_class_row_tensor_and_names_the_rest():
    """The README's recipe (load_from + AdaptCheckpointHook()) on DINO: the
    hook reset only bbox_head.fc_cls, which DINO lacks, so mmengine warned
    "size mismatch" for each classifier and the denoising label embedding.
    A checkpoint of another variant got "every other weight loads"; now it
    is refused, naming both variants (issue 31, item 4)."""
    from types import SimpleNamespace
    from unittest import mock

    from mmengine.config import Config

    from detr_plugin.engine.hooks import AdaptCheckpointHook
    from mmdet_reference import build_plugin_model
    from helpers.configs import CONFIG_DIR
    cfg = Config.fromfile(osp.join(CONFIG_DIR, 'demo', 'dino_r18_shapes.py'))
    three = build_plugin_model(cfg).state_dict()
    cfg.model.bbox_head.num_classes = 1
    model = build_plugin_model(cfg)
    logger = mock.Mock()
    runner = SimpleNamespace(model=model, cfg=dict(load_from='c.pth'),
                             logger=logger)
    state_dict = dict(three)
    AdaptCheckpointHook().after_load_checkpoint(runner, state_dict)
    reset = sorted(k for k in three if three[k].shape !=
                   model.state_dict()[k].shape)
    # a classifier per decoder layer and the encoder's proposals; labels
    branches = [f'bbox_head.cls_branches.{i}'
                for i in range(cfg.model.decoder.num_layers + 1)]
    assert reset == sorted([f'{b}.{p}' for b in branches
                            for p in ('weight', 'bias')] +
                           ['dn_query_generator.label_embedding.weight'])
    for key in reset:
        assert torch.equal(state_dict[key], model.state_dict()[key]), key
    (warning, ), _ = logger.warning.call_args
    assert warning.startswith('Checkpoint classifier has another class count')
    assert warning.endswith(
        ': ' + ', '.join(branches) + ', dn_query_generator.label_embedding '
        'are re-initialized, every other weight loads from the checkpoint.')
    # a DETR checkpoint for Conditional DETR: the decoder is another's, so
    # fine-tuning would start most of the model afresh; refused, naming both
    # variants and the way to start only the backbone from it
    from detr_plugin.checkpoint import CheckpointMisfitError
    detr = build_plugin_model(osp.join(CONFIG_DIR, 'demo',
                                       'detr_r18_shapes.py')).state_dict()
    runner.model = build_plugin_model(osp.join(
        CONFIG_DIR, 'demo', 'conditional-detr_r18_shapes.py'))
    with pytest.raises(CheckpointMisfitError, match=(
            r'the checkpoint c\.pth holds a detr model \(its keys show it\), '
            r'the config builds a conditional_detr: most of its tensors would '
            r"not load\. .*init_cfg=dict\(type='Pretrained', "
            r"prefix='backbone\.'"
    )):
        AdaptCheckpointHook().after_load_checkpoint(runner, dict(detr))


def test_the_resume_refusal_names_the_file_it_read(runs, tmp_path):
    """``--resume`` without a path: the refusal named "the newest checkpoint
    of DIR"; it names the file mmengine read (issue 31, item 5)."""
    import shutil
    work = str(tmp_path / 'work')
    shutil.copytree(runs['straight'], work)
    proc = run_tool(['train.py', TINY_CONFIG, '--resume', '--work-dir', work,
                     '--cfg-options', 'model.bbox_head.num_classes=1',
                     'train_dataloader.dataset.metainfo.classes=[circle]'],
                    runs['root'], check=False)
    assert_ends_with_error(
        proc, f'--resume: the checkpoint {osp.join(work, "iter_4.pth")} does '
        'not fit the model of the config: ')
