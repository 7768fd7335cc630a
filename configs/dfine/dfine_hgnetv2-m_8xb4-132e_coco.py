# D-FINE-M (HGNetV2-B2) on COCO, the official recipe (dfine_hgnetv2_m_coco,
# 52.3 box AP on val2017): the L config with HGNetV2-B2 (learnable affines,
# nothing frozen, BatchNorms train), encoder depth 0.67, 4 decoder layers,
# AdamW 2e-4 (backbone 2e-5), weight decay 1e-4, 132 epochs with the
# augmentation off for the last 12.
_base_ = './dfine_hgnetv2-l_8xb4-80e_coco.py'

model = dict(
    backbone=dict(arch='B2', use_lab=True, frozen_stages=-1,
                  freeze_norm=False),
    neck=dict(in_channels=[384, 768, 1536], depth_mult=0.67),
    decoder=dict(num_layers=4))
optim_wrapper = dict(
    optimizer=dict(lr=2e-4, weight_decay=1e-4),
    paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.1)}))
max_epochs = 132
train_cfg = dict(max_epochs=max_epochs)
custom_hooks = [
    {{_base_.ema_hook}},
    dict(
        type='PipelineSwitchHook',
        switch_epoch=max_epochs - 12,
        switch_pipeline={{_base_.final_train_pipeline}}),
    dict(type='BatchAugmentSwitchHook', switch_epoch=max_epochs - 12)
]
