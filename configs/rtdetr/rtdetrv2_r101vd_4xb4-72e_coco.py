# RT-DETRv2-X (R101vd) on COCO, the official recipe (rtdetrv2_r101vd_6x_coco,
# 54.3 box AP on val2017): the R50vd config with ResNet-101-vd, a 384-wide
# hybrid encoder (FFN 2048) and the backbone at 1/100 of the LR.
_base_ = './rtdetrv2_r50vd_4xb4-72e_coco.py'

model = dict(
    backbone=dict(depth=101),
    neck=dict(hidden_dim=384, dim_feedforward=2048),
    decoder_in_channels=[384] * 3)
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.01)}))
