# Panoptic demo, stage 2 of 2 (tools/demo_panoptic.sh): the mask head of
# DETRPanoptic trained on the frozen box model of stage 1
# (./detr_r18_shapes-panoptic-boxes.py, load_from), as
# ../detr_panoptic/detr_r50_8xb2-panoptic-25e_coco.py on COCO. The demo's
# three-stage ResNet gives the mask head stages 1-2 (strides 8 and 4) before
# the last: two FPN levels instead of the official three, masks at stride 4.
# Evaluates PQ (CocoPanopticMetric) and thing box/mask AP (CocoMetric).
_base_ = ['./detr_r18_shapes-panoptic-boxes.py']

model = dict(
    type='DETRPanoptic',
    freeze_detector=True,  # the optimizer gets the mask head's weights only
    num_things_classes={{_base_.num_things}},
    data_preprocessor=dict(pad_mask=True),
    backbone=dict(out_indices=(0, 1, 2)),
    mask_head=dict(num_heads=8, fpn_dims=(32, 16)),
    test_cfg=dict(mask_thr=0.5, panoptic_score_thr=0.85, min_segment_area=4))

# the detection test pipeline, loading the panoptic annotations
test_pipeline = [
    dict(step, type='LoadPanopticAnnotations')
    if step['type'] == 'LoadAnnotations' else step
    for step in _base_.test_pipeline
]
val_dataloader = dict(
    _delete_=True,  # stage 1 has none
    batch_size=8,
    num_workers=1,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='CheckedCocoPanopticDataset',
        data_root=_base_.data_root,
        metainfo=_base_.metainfo,
        ann_file='annotations/panoptic_val.json',
        data_prefix=dict(img='val/', seg='annotations/panoptic_val/'),
        test_mode=True,
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = [
    dict(
        type='CocoPanopticMetric',
        ann_file=_base_.data_root + 'annotations/panoptic_val.json',
        seg_prefix=_base_.data_root + 'annotations/panoptic_val/'),
    dict(
        type='CocoMetric',
        ann_file=_base_.data_root + 'annotations/instances_val.json',
        metric=['bbox', 'segm'])
]
test_evaluator = val_evaluator
val_cfg = dict(_delete_=True, type='ValLoop')
test_cfg = dict(_delete_=True, type='TestLoop')

max_iters = 1000
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    _base_.param_scheduler[0],  # warm-up
    dict(_base_.param_scheduler[1], end=max_iters,
         milestones=[int(0.8 * max_iters)])
]
default_hooks = dict(checkpoint=dict(interval=max_iters))
# the frozen detector must come from it, whole (AdaptCheckpointHook refuses
# a checkpoint that lacks or misfits one of its tensors)
load_from = 'work_dirs/detr_r18_shapes-panoptic-boxes/iter_8000.pth'
custom_hooks = [dict(type='AdaptCheckpointHook')]
