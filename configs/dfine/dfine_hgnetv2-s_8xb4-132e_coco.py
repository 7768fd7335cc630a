# D-FINE-S (HGNetV2-B0) on COCO, the official recipe (dfine_hgnetv2_s_coco,
# 48.5 box AP on val2017): the M config with HGNetV2-B0, encoder depth 0.34
# and CSP expansion 0.5, 3 decoder layers, the backbone at half the LR.
_base_ = './dfine_hgnetv2-m_8xb4-132e_coco.py'

model = dict(
    backbone=dict(arch='B0'),
    neck=dict(in_channels=[256, 512, 1024], depth_mult=0.34, expansion=0.5),
    decoder=dict(num_layers=3))
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.5)}))
