# RT-DETRv2-M (R50vd-m) on COCO, the official recipe (rtdetrv2_r50vd_m_7x_coco,
# 51.9 box AP on val2017): the R50vd config with CSP expansion 0.5, six
# decoder layers trained and the third one's boxes as detections
# (eval_idx=2), 84 epochs with augmentation off for the last 3.
_base_ = './rtdetrv2_r50vd_4xb4-72e_coco.py'

model = dict(neck=dict(expansion=0.5), decoder=dict(eval_idx=2))
max_epochs = 84
train_cfg = dict(max_epochs=max_epochs)
custom_hooks = [
    {{_base_.ema_hook}},
    dict(
        type='PipelineSwitchHook',
        switch_epoch=max_epochs - 3,
        switch_pipeline={{_base_.final_train_pipeline}}),
    dict(type='BatchAugmentSwitchHook', switch_epoch=max_epochs - 3)
]
