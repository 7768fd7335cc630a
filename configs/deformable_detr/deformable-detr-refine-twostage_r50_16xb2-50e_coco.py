# Two-stage Deformable DETR with box refinement (mmdet: 47.0 box AP): the
# top-scoring encoder proposals become the decoder's reference boxes.
_base_ = './deformable-detr-refine_r50_16xb2-50e_coco.py'

model = dict(as_two_stage=True)
