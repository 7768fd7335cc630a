# DEIM-D-FINE-L (HGNetV2-B4) on COCO, the official recipe (DEIM
# configs/deim_dfine/deim_hgnetv2_l_coco.yml, 54.7 box AP on val2017 in 50
# epochs where D-FINE-L needs 72): the D-FINE-L model with SiLU in the
# decoder's FFNs and MLPs and the backbone unfrozen, trained with
# * Dense O2O: mosaics of 4 images (DenseMosaic: mmdet's Mosaic + a random
#   affine, probability 0.5) and DenseMixUp (mmdet's MixUp, probability
#   0.5) in epochs 4-28, the D-FINE augmentations in epochs 4-49, none
#   before epoch 4 or from epoch 50 (TransformScheduleHook over mmdet's
#   MultiImageMixDataset);
#   the random batch size stops at epoch 50;
# * the matchability-aware loss (MAL, gamma 1.5) instead of VFL;
# * AdamW 5e-4 (backbone 2.5e-5), 2000 quadratic warm-up iterations, flat
#   until epoch 29, cosine to half the LR at epoch 50, then flat; 58 epochs.
# Differences from the official run: mmdet's Mosaic/MixUp stand in for
# DEIM's (its MixUp blends each image with the previous one of the batch,
# mmdet's with a random image of the dataset; its ZoomOut/IoU crop are
# skipped when an image is a mosaic, here they are drawn independently).
_base_ = '../dfine/dfine_hgnetv2-l_8xb4-80e_coco.py'

model = dict(
    backbone=dict(frozen_stages=-1, freeze_norm=False),
    decoder=dict(
        mlp_act='silu',
        layer_cfg=dict(ffn_cfgs=dict(act_cfg=dict(type='SiLU')))),
    bbox_head=dict(
        mlp_act='silu',
        loss_cls=dict(
            _delete_=True,
            type='MatchabilityAwareLoss',
            use_sigmoid=True,
            gamma=1.5,
            loss_weight=1.0)))

backend_args = {{_base_.backend_args}}
train_pipeline = [
    dict(
        type='DenseMosaic',
        img_scale=(320, 320),
        pad_val=0,
        prob=0.5,
        affine=dict(
            max_rotate_degree=10,
            max_translate_ratio=0.1,
            scaling_ratio_range=(0.5, 1.5),
            max_shear_degree=0,
            border=(0, 0),
            border_val=(0, 0, 0))),
    dict(
        type='DenseMixUp',
        img_scale=(640, 640),
        ratio_range=(1.0, 1.0),
        flip_ratio=0.,
        pad_val=0,
        prob=0.5),
    # D-FINE's (mmengine substitutes a base list only whole)
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
    dict(type='RandomFlip', prob=0.5),
    dict(type='Resize', scale=(640, 640), keep_ratio=False),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1, 1), keep_empty=False),
    dict(type='PackDetInputs')
]
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='MultiImageMixDataset',
        dataset=dict(
            type={{_base_.dataset_type}},
            data_root={{_base_.data_root}},
            ann_file='annotations/instances_train2017.json',
            data_prefix=dict(img='train2017/'),
            filter_cfg=dict(filter_empty_gt=False),
            pipeline=[
                dict(type='LoadImageFromFile', backend_args=backend_args),
                dict(type='LoadAnnotations', with_bbox=True)
            ],
            backend_args=backend_args),
        pipeline=train_pipeline))
optim_wrapper = dict(
    optimizer=dict(lr=5e-4),
    paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.05)}))
max_epochs = 58
mix_epochs = (4, 29)  # Mosaic and MixUp
aug_epochs = (4, 50)  # the other augmentations, the random batch size
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='QuadraticWarmupLR', by_epoch=False, begin=0, end=2000),
    dict(
        type='CosineAnnealingLR',
        eta_min_ratio=0.5,
        begin=mix_epochs[1],
        end=aug_epochs[1],
        by_epoch=True,
        convert_to_iter_based=True)
]
mixing = ['DenseMosaic', 'DenseMixUp']
everything = mixing + ['PhotoMetricDistortion', 'RandomApply']
transform_schedule = dict(
    type='TransformScheduleHook',
    schedule={
        0: everything,
        aug_epochs[0]: [],
        mix_epochs[1]: mixing,
        aug_epochs[1]: everything
    })
custom_hooks = [
    {{_base_.ema_hook}}, transform_schedule,
    dict(type='BatchAugmentSwitchHook', switch_epoch=aug_epochs[1])
]
