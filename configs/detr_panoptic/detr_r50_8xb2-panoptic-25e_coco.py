# Panoptic DETR, stage 2 of 2 (paper section 4.4; official README): the mask
# head (DETRPanoptic) trained for 25 epochs, LR x 0.1 at 15, on the frozen
# box model of stage 1 (./detr_r50_8xb2-panoptic-boxes-300e_coco.py, loaded
# with load_from; or the official release converted with
#   python tools/convert_checkpoint.py --from official \
#       detr-r50-panoptic-00ce5173.pth detr_r50_panoptic_coco.pth
# which holds the mask head too: 43.4 PQ in its authors' evaluation).
# Evaluates PQ (CocoPanopticMetric) and thing box/mask AP (CocoMetric).
_base_ = './detr_r50_8xb2-panoptic-boxes-300e_coco.py'

model = dict(
    type='DETRPanoptic',
    freeze_detector=True,  # the optimizer gets the mask head's weights only
    num_things_classes=_base_.num_things,
    # the ground-truth masks padded with the images, for the mask loss
    data_preprocessor=dict(pad_mask=True),
    # ResNet stages 1-3 (strides 4, 8, 16) feed the mask head, 4 DETR
    backbone=dict(out_indices=(0, 1, 2, 3)),
    mask_head=dict(num_heads=8, fpn_dims=(1024, 512, 256)),
    test_cfg=dict(mask_thr=0.5, panoptic_score_thr=0.85, min_segment_area=4))

# the detection test pipeline, loading the panoptic annotations
test_pipeline = [
    dict(step, type='LoadPanopticAnnotations')
    if step['type'] == 'LoadAnnotations' else step
    for step in _base_.test_pipeline
]
val_dataloader = dict(
    _delete_=True,  # stage 1 has none
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=_base_.dataset_type,
        data_root=_base_.data_root,
        ann_file='annotations/panoptic_val2017.json',
        data_prefix=dict(img='val2017/', seg='annotations/panoptic_val2017/'),
        test_mode=True,
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = [
    dict(
        type='CocoPanopticMetric',
        ann_file=_base_.data_root + 'annotations/panoptic_val2017.json',
        seg_prefix=_base_.data_root + 'annotations/panoptic_val2017/'),
    dict(
        type='CocoMetric',
        ann_file=_base_.data_root + 'annotations/instances_val2017.json',
        metric=['bbox', 'segm'])
]
test_evaluator = val_evaluator
val_cfg = dict(_delete_=True, type='ValLoop')
test_cfg = dict(_delete_=True, type='TestLoop')

max_epochs = 25
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(_base_.param_scheduler[0], end=max_epochs, milestones=[15])
]
# the frozen detector must come from it, whole (AdaptCheckpointHook refuses
# a checkpoint that lacks or misfits one of its tensors)
load_from = 'work_dirs/detr_r50_8xb2-panoptic-boxes-300e_coco/epoch_300.pth'
custom_hooks = [dict(type='AdaptCheckpointHook')]
