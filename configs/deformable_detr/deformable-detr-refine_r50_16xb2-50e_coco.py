# Deformable DETR with iterative box refinement (mmdet: 46.2 box AP): each
# decoder layer refines the reference boxes with its own box head.
_base_ = './deformable-detr_r50_16xb2-50e_coco.py'

model = dict(with_box_refine=True)
