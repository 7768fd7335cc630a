# D-FINE-X (HGNetV2-B5) on COCO, the official recipe (dfine_hgnetv2_x_coco,
# 55.8 box AP on val2017): the L config with HGNetV2-B5, an encoder of width
# 384 (FFN 2048) projected to the decoder's 256, W(n) with reg_scale 8, the
# backbone at 0.01 of the LR.
_base_ = './dfine_hgnetv2-l_8xb4-80e_coco.py'

model = dict(
    backbone=dict(arch='B5'),
    neck=dict(hidden_dim=384, dim_feedforward=2048),
    decoder_in_channels=[384] * 3,
    decoder=dict(reg_scale=8.))
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.01)}))
