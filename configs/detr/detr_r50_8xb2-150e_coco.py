# DETR R50 on COCO, mmdet's recipe of the same name: 8 GPUs x 2 images,
# 256-d, 8 heads, 6 + 6 layers, FFN 2048, dropout 0.1, 100 queries, 150
# epochs. ../detr_r50_8xb2.py is its short name.
_base_ = [
    '../_base_/datasets/coco_detection.py', '../_base_/default_runtime.py',
    '../_base_/schedules/detr_adamw_150e.py'
]

# One attention and one FFN config, shared by every attention / FFN below.
detr_attention = dict(
    type='MultiheadAttention',
    embed_dims=256,
    num_heads=8,
    attn_drop=0.1,
    proj_drop=0.1)
detr_ffn = dict(
    type='FFN',
    embed_dims=256,
    feedforward_channels=2048,
    num_fcs=2,
    ffn_drop=0.1,
    act_cfg=dict(type='ReLU', inplace=True))

model = dict(
    type='DETR',
    num_queries=100,
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=1),
    backbone=dict(
        type='ResNet',
        depth=50,
        num_stages=4,
        out_indices=(3, ),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=False),
        norm_eval=True,
        style='pytorch',
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')),
    positional_encoding=dict(
        type='SinePositionalEncoding', num_feats=128, normalize=True),
    encoder=dict(
        num_layers=6,
        layer_cfg=dict(
            attn_cfgs=detr_attention,
            ffn_cfgs=detr_ffn,
            operation_order=('self_attn', 'norm', 'ffn', 'norm'))),
    decoder=dict(
        num_layers=6,
        layer_cfg=dict(
            attn_cfgs=detr_attention,
            ffn_cfgs=detr_ffn,
            operation_order=('self_attn', 'norm', 'cross_attn', 'norm', 'ffn',
                             'norm')),
        post_norm_cfg=dict(type='LN'),
        return_intermediate=True),
    bbox_head=dict(
        type='DETRHead',
        num_classes=80,
        embed_dims=256,
        loss_cls=dict(
            type='CrossEntropyLoss',
            bg_cls_weight=0.1,
            use_sigmoid=False,
            loss_weight=1.0,
            class_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=5.0),
        loss_iou=dict(type='GIoULoss', loss_weight=2.0)),
    train_cfg=dict(
        assigner=dict(
            type='HungarianAssigner',
            match_costs=[
                dict(type='ClassificationCost', weight=1.),
                dict(type='BBoxL1Cost', weight=5.0),
                dict(type='IoUCost', iou_mode='giou', weight=2.0)
            ])),
    # max_per_img must not exceed num_queries (the head clamps it anyway)
    test_cfg=dict(max_per_img=100))

# DETR's augmentation: flip, then either a multi-scale resize or
# resize -> random crop -> multi-scale resize (paper section A.4).
detr_scales = [(480, 1333), (512, 1333), (544, 1333), (576, 1333),
               (608, 1333), (640, 1333), (672, 1333), (704, 1333),
               (736, 1333), (768, 1333), (800, 1333)]
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomChoice',
        transforms=[[
            dict(type='RandomChoiceResize', scales=detr_scales,
                 keep_ratio=True)
        ],
                    [
                        dict(
                            type='RandomChoiceResize',
                            scales=[(400, 1333), (500, 1333), (600, 1333)],
                            keep_ratio=True),
                        dict(
                            type='RandomCrop',
                            crop_type='absolute_range',
                            crop_size=(384, 600),
                            allow_negative_crop=True),
                        dict(
                            type='RandomChoiceResize',
                            scales=detr_scales,
                            keep_ratio=True)
                    ]]),
    dict(type='PackDetInputs')
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
