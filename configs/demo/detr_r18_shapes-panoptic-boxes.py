# Panoptic demo, stage 1 of 2 (tools/demo_panoptic.sh): ./detr_r18_shapes.py
# learns the boxes of the panoptic shapes set (data/shapes_panoptic/, written
# by tools/generate_demo_data.py --panoptic: 64 x 64 images, 0-3 shapes over
# 1-3 stuff bands), the stuff bands being objects too (AddStuffInstances), as
# ../detr_panoptic/detr_r50_8xb2-panoptic-boxes-300e_coco.py on COCO. Up to 6
# objects per image: 8 queries. 8,000 iterations, twice the detection demo's:
# the things on textured stuff take longer to learn (at 4,000 iterations the
# true positive things scored 0.57 in the median, and stage 2 keeps things
# scoring above 0.85). No validation (see that config); stage 2,
# ./detr_r18_shapes-panoptic.py, evaluates.
_base_ = ['./detr_r18_shapes.py']

data_root = 'data/shapes_panoptic/'
metainfo = dict(
    classes=('circle', 'square', 'triangle', 'sky', 'water', 'ground'),
    thing_classes=('circle', 'square', 'triangle'),
    stuff_classes=('sky', 'water', 'ground'),
    palette=[(220, 20, 60), (0, 160, 0), (0, 0, 230), (135, 206, 235),
             (25, 60, 140), (150, 110, 60)])
num_things = 3
num_queries = 8
model = dict(
    num_queries=num_queries,
    bbox_head=dict(num_classes=len(metainfo['classes'])),
    test_cfg=dict(max_per_img=num_queries))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadPanopticAnnotations'),
    dict(type='AddStuffInstances', num_things=num_things),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
train_dataloader = dict(
    dataset=dict(
        type='CheckedCocoPanopticDataset',
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/panoptic_train.json',
        data_prefix=dict(img='train/', seg='annotations/panoptic_train/'),
        pipeline=train_pipeline))
val_dataloader = None
val_evaluator = None
val_cfg = None
test_dataloader = None
test_evaluator = None
test_cfg = None

max_iters = 8000
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    _base_.param_scheduler[0],  # warm-up
    dict(_base_.param_scheduler[1], end=max_iters,
         milestones=[int(0.8 * max_iters)])
]
default_hooks = dict(checkpoint=dict(interval=max_iters))
