# DETR-DC5 R50, 150 epochs: the last ResNet stage dilated instead of strided,
# so the transformer sees stride-16 features (4x the tokens of stride 32).
_base_ = './detr_r50_8xb2-150e_coco.py'

model = dict(backbone=dict(strides=(1, 2, 2, 1), dilations=(1, 1, 1, 2)))
