# Deformable DETR R50 on COCO, mmdet's recipe
# (deformable-detr_r50_16xb2-50e_coco.py, 44.3 box AP in mmdet's model zoo):
# four levels (ResNet strides 8/16/32 + one at 64 through mmdet's
# ChannelMapper), 6 + 6 layers of deformable attention (4 points per head
# and level), FFN 1024, 300 queries with learned reference points, sigmoid
# focal classification, AdamW 2e-4 (sampling offsets and reference points at
# x 0.1), 50 epochs with the LR dropped at 40, 16 GPUs x 2 images.
_base_ = '../detr/detr_r50_8xb2-150e_coco.py'

deformable_attention = dict(
    type='DeformableAttention', embed_dims=256, num_levels=4, dropout=0.1)
ffn = dict(feedforward_channels=1024)
model = dict(
    type='DeformableDETR',
    num_queries=300,
    num_feature_levels=4,
    with_box_refine=False,
    as_two_stage=False,
    backbone=dict(out_indices=(1, 2, 3)),
    neck=dict(
        type='ChannelMapper',
        in_channels=[512, 1024, 2048],
        kernel_size=1,
        out_channels=256,
        act_cfg=None,
        norm_cfg=dict(type='GN', num_groups=32),
        num_outs=4),
    encoder=dict(
        layer_cfg=dict(
            attn_cfgs=dict(deformable_attention, _delete_=True),
            ffn_cfgs=ffn)),
    decoder=dict(
        layer_cfg=dict(
            attn_cfgs=[{{_base_.detr_attention}}, deformable_attention],
            ffn_cfgs=ffn),
        post_norm_cfg=None),
    positional_encoding=dict(offset=-0.5),
    bbox_head=dict(
        type='DeformableDETRHead',
        loss_cls=dict(
            _delete_=True,
            type='FocalLoss',
            use_sigmoid=True,
            gamma=2.0,
            alpha=0.25,
            loss_weight=2.0)),
    train_cfg=dict(
        assigner=dict(match_costs=[
            dict(type='FocalLossCost', weight=2.0),
            dict(type='BBoxL1Cost', weight=5.0),
            dict(type='IoUCost', iou_mode='giou', weight=2.0)
        ])))

# DETR's augmentation with a longer side of up to 4200 for the crop branch
detr_scales = {{_base_.detr_scales}}
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
                            scales=[(400, 4200), (500, 4200), (600, 4200)],
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

optim_wrapper = dict(
    optimizer=dict(lr=0.0002),
    paramwise_cfg=dict(
        custom_keys={
            'backbone': dict(lr_mult=0.1),
            'sampling_offsets': dict(lr_mult=0.1),
            'reference_points': dict(lr_mult=0.1)
        }))
max_epochs = 50
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[40],
        gamma=0.1)
]
auto_scale_lr = dict(base_batch_size=32)
