# DEIM-D-FINE-X (HGNetV2-B5) on COCO, the official recipe
# (deim_hgnetv2_x_coco, 56.5 box AP on val2017): the DEIM-L config with
# D-FINE-X's model (HGNetV2-B5, encoder width 384 with FFN 2048, reg_scale
# 8) and the backbone at 0.01 of the LR.
_base_ = './deim_dfine_hgnetv2-l_8xb4-58e_coco.py'

model = dict(
    backbone=dict(arch='B5'),
    neck=dict(hidden_dim=384, dim_feedforward=2048),
    decoder_in_channels=[384] * 3,
    decoder=dict(reg_scale=8.))
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.01)}))
