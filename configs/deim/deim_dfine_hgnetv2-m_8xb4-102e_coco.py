# DEIM-D-FINE-M (HGNetV2-B2) on COCO, the official recipe
# (deim_hgnetv2_m_coco, 52.7 box AP on val2017): the DEIM-L config with
# D-FINE-M's model (HGNetV2-B2 with learnable affines, encoder depth 0.67, 4
# decoder layers), AdamW 4e-4 (backbone 4e-5), weight decay 1e-4, 102 epochs:
# Mosaic/MixUp in epochs 4-48, the other augmentations until epoch 90.
_base_ = './deim_dfine_hgnetv2-l_8xb4-58e_coco.py'

model = dict(
    backbone=dict(arch='B2', use_lab=True),
    neck=dict(in_channels=[384, 768, 1536], depth_mult=0.67),
    decoder=dict(num_layers=4))
optim_wrapper = dict(
    optimizer=dict(lr=4e-4, weight_decay=1e-4),
    paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.1)}))
max_epochs = 102
mix_epochs = (4, 49)
aug_epochs = (4, 90)
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
custom_hooks = [
    {{_base_.ema_hook}},
    dict(
        type='TransformScheduleHook',
        schedule={
            0: {{_base_.everything}},
            aug_epochs[0]: [],
            mix_epochs[1]: {{_base_.mixing}},
            aug_epochs[1]: {{_base_.everything}}
        }),
    dict(type='BatchAugmentSwitchHook', switch_epoch=aug_epochs[1])
]
