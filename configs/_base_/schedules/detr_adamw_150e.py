# DETR's optimization (paper section 4 / A.4): AdamW 1e-4, weight decay 1e-4,
# backbone LR x 0.1, gradient clipping at 0.1; 150 epochs, LR x 0.1 at 100.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0001, weight_decay=0.0001),
    clip_grad=dict(max_norm=0.1, norm_type=2),
    paramwise_cfg=dict(
        custom_keys={'backbone': dict(lr_mult=0.1, decay_mult=1.0)}))

max_epochs = 150
train_cfg = dict(
    type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

param_scheduler = [
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[100],
        gamma=0.1)
]

# base_batch_size = (8 GPUs) x (2 samples per GPU); --auto-scale-lr scales
# the LR linearly from it.
auto_scale_lr = dict(base_batch_size=16)
