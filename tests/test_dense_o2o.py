"""DEIM's Dense O2O with mmdet's parts: ``DenseMosaic`` (mmdet's Mosaic,
then a random affine of the mosaic only) and ``TransformScheduleHook``
(mmdet's ``MultiImageMixDataset`` skipping transforms by epoch), and the
DEIM configs that schedule them."""
import glob
import os.path as osp
from types import SimpleNamespace

import numpy as np
from helpers.configs import CONFIG_DIR
from mmdet.structures.bbox import HorizontalBoxes
from mmengine.config import Config
from mmengine.logging import MMLogger

from detr_plugin.datasets.transforms import DenseMixUp, DenseMosaic
from detr_plugin.engine.hooks import TransformScheduleHook


def image(seed, size=(40, 60)):
    rng = np.random.default_rng(seed)
    boxes = np.array([[2, 3, 20, 30], [10, 5, 50, 35]], dtype=np.float32)
    return dict(img=rng.integers(0, 255, (*size, 3), dtype=np.uint8),
                img_shape=size, ori_shape=size,
                gt_bboxes=HorizontalBoxes(boxes),
                gt_bboxes_labels=np.array([0, 1]),
                gt_ignore_flags=np.array([False, False]))


def mosaic(prob):
    return DenseMosaic(img_scale=(32, 32), prob=prob, affine=dict(
        max_rotate_degree=10, max_translate_ratio=0.1,
        scaling_ratio_range=(0.5, 1.5), max_shear_degree=0, border=(0, 0)))


def test_a_mosaic_has_the_four_images_boxes_on_twice_the_scale():
    results = image(0)
    results['mix_results'] = [image(s) for s in (1, 2, 3)]
    out = mosaic(1.0)(results)
    assert out['img'].shape[:2] == (64, 64)  # 2 x img_scale
    # 8 boxes placed (some may be cut off by the affine, none invented)
    assert 1 <= len(out['gt_bboxes']) <= 8


def test_without_a_mosaic_or_mixup_the_image_is_untouched():
    results = image(0)
    original = results['img'].copy()
    results['mix_results'] = [image(s) for s in (1, 2, 3)]
    out = mosaic(0.0)(results)
    assert np.array_equal(out['img'], original)
    assert len(out['gt_bboxes']) == 2 and 'mix_results' not in out
    mixup = DenseMixUp(img_scale=(40, 60), ratio_range=(1., 1.),
                       flip_ratio=0., prob=0.)
    results['mix_results'] = [image(1)]
    assert np.array_equal(mixup(results)['img'], original)
    mixup.prob = 1.
    results['mix_results'] = [image(1)]
    mixed = mixup(results)  # blended, the boxes of both images
    assert not np.array_equal(mixed['img'], original)
    assert len(mixed['gt_bboxes']) == 4


class FakeMixDataset:
    def __init__(self):
        self.calls = []

    def update_skip_type_keys(self, keys):
        self.calls.append(list(keys))


def test_the_schedule_skips_by_epoch_and_after_a_resume():
    schedule = {0: ['A', 'B', 'C'], 4: [], 29: ['A'], 50: ['A', 'B', 'C']}
    for epochs, expected in (([0, 1, 4, 5, 29, 50, 57],
                              [['A', 'B', 'C'], [], ['A'], ['A', 'B', 'C']]),
                             ([30, 31], [['A']])):  # resumed at epoch 30
        hook, dataset = TransformScheduleHook(schedule), FakeMixDataset()
        loader = SimpleNamespace(dataset=dataset, persistent_workers=False)
        for epoch in epochs:
            hook.before_train_epoch(SimpleNamespace(
                epoch=epoch, train_dataloader=loader,
                logger=MMLogger.get_current_instance()))
        assert dataset.calls == expected


def test_every_deim_config_schedules_its_mixing_and_augmentations():
    """Mosaic and MixUp only in the middle stage, the other augmentations
    and the random batch size until the end of the longer one; the model is
    D-FINE's with SiLU MLPs and MAL."""
    paths = glob.glob(osp.join(CONFIG_DIR, 'deim', '*.py'))
    assert len(paths) == 4
    for path in paths:
        cfg = Config.fromfile(path)
        hooks = {h['type']: h for h in cfg.custom_hooks}
        schedule = hooks['TransformScheduleHook']['schedule']
        start, mix_end, aug_end = sorted(schedule)[1:]
        assert schedule[start] == [] and start == 4
        assert set(schedule[mix_end]) == {'DenseMosaic', 'DenseMixUp'}
        assert set(schedule[0]) == set(schedule[aug_end]) > \
            set(schedule[mix_end])
        assert hooks['BatchAugmentSwitchHook']['switch_epoch'] == aug_end
        assert aug_end < cfg.train_cfg.max_epochs
        dataset = cfg.train_dataloader.dataset
        assert dataset.type == 'MultiImageMixDataset'
        assert [t['type'] for t in dataset.pipeline[:2]] == \
            ['DenseMosaic', 'DenseMixUp']
        assert cfg.model.type == 'DFINE'
        assert cfg.model.bbox_head.loss_cls.type == 'MatchabilityAwareLoss'
        # a sigmoid classifier of 80 rows (no no-object class): the head
        # reads use_sigmoid from the config
        assert cfg.model.bbox_head.loss_cls.use_sigmoid
        assert cfg.model.bbox_head.mlp_act == cfg.model.decoder.mlp_act == \
            'silu'


def test_tools_train_runs_the_deim_recipe_through_its_stages(tmp_path):
    """``tools/train.py`` on the DEIM-L config, shrunk (the D-FINE demo's
    model with DEIM's SiLU MLPs and MAL, 8 shapes images, 128-pixel
    inputs, 3 epochs of 2 iterations): the config passes the tool's checks
    (a by-epoch cosine converted to iterations), the data check sees
    through the mixing dataset, and the hook switches the stages."""
    from helpers.configs import CONFIG_DIR
    from helpers.data import SHAPES_CLASSES, make_shapes
    from helpers.tools import run_tool
    root = make_shapes(str(tmp_path / 'shapes'), num_train=8)
    cfg = Config.fromfile(
        osp.join(CONFIG_DIR, 'deim', 'deim_dfine_hgnetv2-l_8xb4-58e_coco.py'))
    model = Config.fromfile(
        osp.join(CONFIG_DIR, 'demo', 'dfine_r18vd_shapes.py')).model
    model.decoder.mlp_act = model.bbox_head.mlp_act = 'silu'
    model.bbox_head.loss_cls = cfg.model.bbox_head.loss_cls
    model.data_preprocessor.batch_augments = None
    cfg.model = model
    dataset = cfg.train_dataloader.dataset
    dataset.dataset.update(
        data_root=root, ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'), metainfo=dict(classes=SHAPES_CLASSES))
    scales = dict(Resize=('scale', (128, 128)),
                  DenseMixUp=('img_scale', (128, 128)),
                  DenseMosaic=('img_scale', (64, 64)))
    for transform in dataset.pipeline:
        if transform['type'] in scales:
            key, value = scales[transform['type']]
            transform[key] = value
    cfg.train_dataloader.update(batch_size=4, num_workers=0,
                                persistent_workers=False)
    for split in ('val', 'test'):
        for part in ('dataloader', 'cfg', 'evaluator'):
            cfg[f'{split}_{part}'] = None
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=3)
    everything = cfg.custom_hooks[1].schedule[0]
    cfg.custom_hooks[1].schedule = {0: everything, 1: [],
                                    2: list(cfg.mixing)}
    cfg.custom_hooks[2].switch_epoch = 2
    cfg.param_scheduler[0].end = 4
    cfg.param_scheduler[1].update(begin=1, end=2)
    config = str(tmp_path / 'deim_tiny.py')
    cfg.dump(config)
    out = run_tool(['train.py', config, '--work-dir', 'work'],
                   cwd=str(tmp_path)).out
    for epoch, skipped in ((0, str(everything)), (1, 'none'),
                           (2, str(list(cfg.mixing)))):
        assert f'epoch {epoch}: transforms skipped: {skipped}' in out
    assert 'Epoch(train) [3][2/2]' in out
