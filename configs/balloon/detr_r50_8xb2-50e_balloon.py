# Fine-tune COCO DETR R50 on the balloon set (1 class; 61 train / 13 val
# images), the way to train on any COCO-format dataset: inherit the model,
# change the data, the class count, the schedule and the starting weights.
#
# Layout expected under data_root:
#   annotations/instances_train.json  annotations/instances_val.json
#   train/*.jpg  val/*.jpg
_base_ = ['../detr/detr_r50_8xb2-150e_coco.py']

data_root = 'data/balloon/'
# The names must equal the JSON's category names; their order gives the
# labels 0..K-1.
metainfo = dict(classes=('balloon', ), palette=[(220, 20, 60)])

# load_from (below) holds the whole model: no ImageNet backbone first (the
# base's torchvision://resnet50, which needs torchvision and a download)
model = dict(backbone=dict(init_cfg=None), bbox_head=dict(num_classes=1))

train_dataloader = dict(
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/')))
val_dataloader = dict(
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/')))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

# A short fine-tuning schedule: 50 epochs, LR x 0.1 after 40.
max_epochs = 50
train_cfg = dict(max_epochs=max_epochs, val_interval=5)
param_scheduler = [
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[40],
        gamma=0.1)
]
default_hooks = dict(checkpoint=dict(interval=5, max_keep_ckpts=2))

# mmdet's COCO DETR R50 (150 epochs, 39.9 box AP), 80 classes. Download it or
# point this at a local copy. AdaptCheckpointHook renames its keys from mmdet's
# layout and drops its 81-row classifier: bbox_head.fc_cls starts from scratch
# (one log line says so), every other weight loads.
load_from = 'https://download.openmmlab.com/mmdetection/v3.0/detr/detr_r50_8xb2-150e_coco/detr_r50_8xb2-150e_coco_20221023_153551-436d03e8.pth'  # noqa
custom_hooks = [dict(type='AdaptCheckpointHook')]
