# The tests' one tiny config: DETR R50's recipe shrunk to ResNet-18
# with 8 base channels (frozen BN, as the base), a 32-d 2 + 2 layer
# transformer, 10 queries, no dropout, on the synthetic shapes set at
# data/shapes/ relative to the working directory (tests/helpers/configs.py
# points it elsewhere). Iteration-based: 4 iterations of batch 1 (no
# shuffling), LR x 0.1 before the 4th, a checkpoint every 2 iterations, no
# validation.
_base_ = '../../configs/detr/detr_r50_8xb2-150e_coco.py'

attn = dict(
    type='MultiheadAttention',
    embed_dims=32,
    num_heads=4,
    attn_drop=0.,
    proj_drop=0.)
ffn = dict(
    type='FFN',
    embed_dims=32,
    feedforward_channels=64,
    num_fcs=2,
    ffn_drop=0.,
    act_cfg=dict(type='ReLU', inplace=True))
model = dict(
    num_queries=10,
    backbone=dict(depth=18, base_channels=8, init_cfg=None),
    positional_encoding=dict(num_feats=16),
    encoder=dict(num_layers=2, layer_cfg=dict(attn_cfgs=attn, ffn_cfgs=ffn)),
    decoder=dict(num_layers=2, layer_cfg=dict(attn_cfgs=attn, ffn_cfgs=ffn)),
    bbox_head=dict(num_classes=3, embed_dims=32),
    test_cfg=dict(max_per_img=10))

data_root = 'data/shapes/'
metainfo = dict(classes=('circle', 'square', 'triangle'))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(64, 64), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]
train_dataloader = dict(
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    batch_sampler=None,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        pipeline=train_pipeline))
test_dataloader = dict(
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'),
        pipeline=test_pipeline))
test_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
val_dataloader = None
val_cfg = None
val_evaluator = None

train_cfg = dict(
    _delete_=True, type='IterBasedTrainLoop', max_iters=4, val_interval=100)
param_scheduler = [
    dict(
        type='MultiStepLR',
        begin=0,
        end=4,
        by_epoch=False,
        milestones=[3],
        gamma=0.1)
]
optim_wrapper = dict(optimizer=dict(lr=1e-3))
default_hooks = dict(
    logger=dict(interval=1),
    checkpoint=dict(by_epoch=False, interval=2))
log_processor = dict(by_epoch=False, window_size=1)
randomness = dict(seed=0)
