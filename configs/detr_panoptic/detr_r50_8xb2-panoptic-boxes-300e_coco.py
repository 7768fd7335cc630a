# Panoptic DETR, stage 1 of 2 (official README, "Usage - Segmentation"):
# ../detr/detr_r50_8xb2-150e_coco.py learns the boxes of COCO panoptic's 80
# thing and 53 stuff classes, each stuff region one object (AddStuffInstances), for 300
# epochs with the LR x 0.1 at 200. Data at data/coco/ (mmdet's layout):
# annotations/panoptic_{train,val}2017.json and their PNG folders.
# No validation: the box model's stuff classes have no COCO box metric; stage
# 2 (./detr_r50_8xb2-panoptic-25e_coco.py) evaluates PQ and box/mask AP.
_base_ = '../detr/detr_r50_8xb2-150e_coco.py'

num_things = 80
num_stuff = 53
model = dict(bbox_head=dict(num_classes=num_things + num_stuff))

dataset_type = 'CheckedCocoPanopticDataset'
data_root = 'data/coco/'
# DETR's augmentation after loading the panoptic annotations.
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadPanopticAnnotations',
         backend_args={{_base_.backend_args}}),
    dict(type='AddStuffInstances', num_things=num_things),
    *_base_.train_pipeline[2:]
]
train_dataloader = dict(
    dataset=dict(
        type=dataset_type,
        ann_file='annotations/panoptic_train2017.json',
        data_prefix=dict(
            img='train2017/', seg='annotations/panoptic_train2017/'),
        pipeline=train_pipeline))
val_dataloader = None
val_evaluator = None
val_cfg = None
test_dataloader = None
test_evaluator = None
test_cfg = None

max_epochs = 300
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(_base_.param_scheduler[0], end=max_epochs, milestones=[200])
]
