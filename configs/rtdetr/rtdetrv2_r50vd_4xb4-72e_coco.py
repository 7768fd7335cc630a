# RT-DETRv2-L (R50vd) on COCO, the official recipe (rtdetrv2_pytorch
# configs/rtdetrv2/rtdetrv2_r50vd_6x_coco.yml, 53.4 box AP on val2017):
# ResNet-50-vd with frozen stem and BatchNorms, the hybrid encoder (one
# self-attention layer on stride 32, CSP/RepVGG fusion, expansion 1.0), 300
# queries picked from the encoder's proposals, 6 decoder layers of 3-level
# deformable attention (4 points), up to 100 denoising queries; varifocal
# loss, L1 x 5, GIoU x 2. AdamW 1e-4 (backbone 1e-5, no weight decay on
# norms), 2000 warm-up iterations then constant, gradient clip 0.1, EMA
# (decay 0.9999, ramp 2000), 72 epochs, 4 GPUs x 4 images at 640 x 640.
# Differences from the official run, mmdet's parts standing in for its
# torchvision ones: mmdet's PhotoMetricDistortion (additive brightness),
# Expand, MinIoURandomCrop and cv2 resizing; the batch's random size is
# mmdet's BatchSyncRandomResize (480-800, bilinear; the official picks from a
# list, nearest), stopped with the other augmentations by our
# BatchAugmentSwitchHook.
_base_ = [
    '../_base_/datasets/coco_detection.py', '../_base_/default_runtime.py'
]

embed_dims = 256
# one random size per batch, as the official multi-scale training
multi_scale = [
    dict(
        type='BatchSyncRandomResize',
        random_size_range=(480, 800),
        size_divisor=32,
        interval=1)
]
model = dict(
    type='RTDETR',
    num_queries=300,
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[0., 0., 0.],
        std=[255., 255., 255.],
        bgr_to_rgb=True,
        pad_size_divisor=32,
        batch_augments=multi_scale),
    backbone=dict(
        type='PResNet',
        depth=50,
        num_stages=4,
        out_indices=(1, 2, 3),
        frozen_stages=0,
        norm_cfg=dict(type='BN', requires_grad=False),
        norm_eval=True,
        style='pytorch'),
    neck=dict(
        type='HybridEncoder',
        in_channels=[512, 1024, 2048],
        hidden_dim=embed_dims,
        expansion=1.0),
    decoder_in_channels=[embed_dims] * 3,
    decoder=dict(
        num_layers=6,
        eval_idx=-1,
        layer_cfg=dict(
            attn_cfgs=[
                dict(
                    type='MultiheadAttention',
                    embed_dims=embed_dims,
                    num_heads=8,
                    attn_drop=0.,
                    proj_drop=0.),
                dict(
                    type='DeformableAttention',
                    embed_dims=embed_dims,
                    num_heads=8,
                    num_levels=3,
                    num_points=4,
                    dropout=0.)
            ],
            ffn_cfgs=dict(
                embed_dims=embed_dims,
                feedforward_channels=1024,
                ffn_drop=0.,
                act_cfg=dict(type='ReLU', inplace=True)),
            operation_order=('self_attn', 'norm', 'cross_attn', 'norm',
                             'ffn', 'norm'))),
    bbox_head=dict(
        type='RTDETRHead',
        num_classes=80,
        embed_dims=embed_dims,
        loss_cls=dict(
            type='RTDETRVarifocalLoss',
            use_sigmoid=True,
            alpha=0.75,
            gamma=2.0,
            loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=5.0),
        loss_iou=dict(type='GIoULoss', loss_weight=2.0)),
    dn_cfg=dict(
        label_noise_scale=0.5,
        box_noise_scale=1.0,
        group_cfg=dict(dynamic=True, num_dn_queries=100)),
    train_cfg=dict(
        assigner=dict(
            type='HungarianAssigner',
            match_costs=[
                dict(type='FocalLossCost', weight=2.0, eps=1e-8),
                dict(type='BBoxL1Cost', weight=5.0),
                dict(type='IoUCost', iou_mode='giou', weight=2.0)
            ])),
    test_cfg=dict(max_per_img=300))

backend_args = {{_base_.backend_args}}
# the official augmentation; the first three stop for the last epochs
# (PipelineSwitchHook below)
final_train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Resize', scale=(640, 640), keep_ratio=False),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1, 1), keep_empty=False),
    dict(type='PackDetInputs')
]
train_pipeline = final_train_pipeline[:2] + [
    dict(type='PhotoMetricDistortion'),
    dict(
        type='RandomApply',
        prob=0.5,
        transforms=[dict(type='Expand', mean=[0, 0, 0], ratio_range=(1, 4))]),
    dict(
        type='RandomApply',
        prob=0.8,
        transforms=[
            dict(
                type='MinIoURandomCrop',
                min_ious=(0.1, 0.3, 0.5, 0.7, 0.9),
                min_crop_size=0.3)
        ]),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1, 1), keep_empty=False),
] + final_train_pipeline[2:]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=(640, 640), keep_ratio=False),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]
train_dataloader = dict(
    batch_size=4,
    batch_sampler=None,
    dataset=dict(
        filter_cfg=dict(filter_empty_gt=False), pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=1e-4),
    clip_grad=dict(max_norm=0.1, norm_type=2),
    paramwise_cfg=dict(
        norm_decay_mult=0., custom_keys={'backbone': dict(lr_mult=0.1)}))
max_epochs = 72
aug_stop_epochs = 1  # the official policy: from epoch 71 of 72
train_cfg = dict(
    type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1 / 2000,
        by_epoch=False,
        begin=0,
        end=2000)
]
# the official EMA: decay 0.9999 * (1 - exp(-updates / 2000)), buffers too
ema_hook = dict(
    type='EMAHook',
    ema_type='ExpMomentumEMA',
    momentum=1e-4,
    gamma=2000,
    update_buffers=True,
    priority=49)
custom_hooks = [
    ema_hook,
    dict(
        type='PipelineSwitchHook',
        switch_epoch=max_epochs - aug_stop_epochs,
        switch_pipeline=final_train_pipeline),
    # the random batch size stops with them
    dict(
        type='BatchAugmentSwitchHook',
        switch_epoch=max_epochs - aug_stop_epochs)
]
auto_scale_lr = dict(base_batch_size=16)
