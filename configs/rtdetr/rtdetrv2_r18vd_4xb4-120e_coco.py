# RT-DETRv2-S (R18vd) on COCO, the official recipe (rtdetrv2_r18vd_120e_coco,
# 48.1 box AP on val2017 with the released re-run, 47.9 in the paper): the
# R50vd config with ResNet-18-vd whose BatchNorms train (nothing frozen), CSP
# expansion 0.5, 3 decoder layers, the backbone at the full LR, no
# multi-scale batches, 120 epochs with augmentation off for the last 3.
_base_ = './rtdetrv2_r50vd_4xb4-72e_coco.py'

model = dict(
    data_preprocessor=dict(batch_augments=None),
    backbone=dict(
        depth=18,
        frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False),
    neck=dict(in_channels=[128, 256, 512], expansion=0.5),
    decoder=dict(num_layers=3))
optim_wrapper = dict(paramwise_cfg=dict(custom_keys=dict(_delete_=True)))
max_epochs = 120
train_cfg = dict(max_epochs=max_epochs)
custom_hooks = [
    {{_base_.ema_hook}},
    dict(
        type='PipelineSwitchHook',
        switch_epoch=max_epochs - 3,
        switch_pipeline={{_base_.final_train_pipeline}}),
    dict(type='BatchAugmentSwitchHook', switch_epoch=max_epochs - 3)
]
