# DETR with ResNet-18, 500 epochs. The input projection reads the backbone's
# output channels (512) from ResNet.feat_dim, so nothing else changes.
_base_ = './detr_r50_8xb2-500e_coco.py'

model = dict(
    backbone=dict(
        depth=18,
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet18')))
