# RT-DETRv2-M* (R34vd) on COCO, the official recipe (rtdetrv2_r34vd_120e_coco,
# 49.9 box AP on val2017): the R18vd config with ResNet-34-vd, 4 decoder
# layers, the backbone at half the LR and multi-scale batches.
_base_ = './rtdetrv2_r18vd_4xb4-120e_coco.py'

model = dict(
    data_preprocessor=dict(batch_augments={{_base_.multi_scale}}),
    backbone=dict(depth=34),
    decoder=dict(num_layers=4))
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.5)}))
