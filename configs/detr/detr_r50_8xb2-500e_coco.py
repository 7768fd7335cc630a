# DETR R50, the paper's 500-epoch schedule (42.0 AP): LR x 0.1 at epoch 334,
# validation every 10 epochs, only the latest 2 checkpoints kept.
_base_ = './detr_r50_8xb2-150e_coco.py'

max_epochs = 500
train_cfg = dict(
    type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=10)
param_scheduler = [
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[334],
        gamma=0.1)
]
default_hooks = dict(checkpoint=dict(max_keep_ckpts=2))
