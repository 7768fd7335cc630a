# DEIM-D-FINE-S (HGNetV2-B0) on COCO, the official recipe
# (deim_hgnetv2_s_coco, 49.0 box AP on val2017): the DEIM-M config with
# D-FINE-S's model (HGNetV2-B0, encoder depth 0.34 and expansion 0.5, 3
# decoder layers), the backbone at half the LR, 132 epochs: Mosaic/MixUp in
# epochs 4-63, the other augmentations until epoch 120.
_base_ = './deim_dfine_hgnetv2-m_8xb4-102e_coco.py'

model = dict(
    backbone=dict(arch='B0'),
    neck=dict(in_channels=[256, 512, 1024], depth_mult=0.34, expansion=0.5),
    decoder=dict(num_layers=3))
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.5)}))
max_epochs = 132
mix_epochs = (4, 64)
aug_epochs = (4, 120)
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
