# D-FINE-L (HGNetV2-B4) on COCO, the official recipe (D-FINE
# configs/dfine/dfine_hgnetv2_l_coco.yml, 54.0 box AP on val2017): RT-DETRv2's
# layout (configs/rtdetr/) with D-FINE's parts -- HGNetV2-B4 with the stem
# and every BatchNorm frozen, the D-FINE hybrid encoder (SCDown, GELAN
# fusion), 6 decoder layers of (3, 6, 3)-point deformable attention without
# value/output projections, a gate instead of the second residual, FDR
# boxes (32 bins per edge, W(n) with reg_scale 4, up 0.5), LQE; losses VFL,
# L1 x 5, GIoU x 2, FGL x 0.15, DDF x 1.5, boxes on the union of the
# outputs' matches. AdamW 2.5e-4 (backbone 1.25e-5, no weight decay on
# norms), weight decay 1.25e-4, 500 warm-up iterations then constant,
# gradient clip 0.1, EMA (0.9999, ramp 1000), 80 epochs, augmentation and
# multi-scale off for the last 8, 8 GPUs x 4 images at 640 x 640.
# Differences from the official run: mmdet's augmentations as RT-DETRv2's
# configs (configs/rtdetr/rtdetrv2_r50vd_4xb4-72e_coco.py); the official
# restarts its EMA from the best stage-1 checkpoint when the augmentation
# stops, ours keeps it.
_base_ = '../rtdetr/rtdetrv2_r50vd_4xb4-72e_coco.py'

embed_dims = 256
model = dict(
    type='DFINE',
    backbone=dict(
        _delete_=True,
        type='HGNetV2',
        arch='B4',
        use_lab=False,
        out_indices=(1, 2, 3),
        frozen_stages=0,
        freeze_norm=True),
    neck=dict(
        type='DFINEHybridEncoder',
        in_channels=[512, 1024, 2048],
        hidden_dim=embed_dims,
        expansion=1.0,
        depth_mult=1.0),
    decoder=dict(
        num_layers=6,
        reg_max=32,
        reg_scale=4.,
        layer_cfg=dict(
            attn_cfgs=[
                dict(
                    type='MultiheadAttention',
                    embed_dims=embed_dims,
                    num_heads=8,
                    attn_drop=0.,
                    proj_drop=0.),
                dict(
                    type='DFINEDeformableAttention',
                    embed_dims=embed_dims,
                    num_heads=8,
                    num_points=(3, 6, 3),
                    dropout=0.)
            ],
            operation_order=('self_attn', 'norm', 'cross_attn', 'ffn',
                             'norm'))),
    bbox_head=dict(type='DFINEHead', reg_max=32, loss_fgl=0.15,
                   loss_ddf=1.5))

train_dataloader = dict(batch_size=4)
optim_wrapper = dict(
    optimizer=dict(lr=2.5e-4, weight_decay=1.25e-4),
    paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.05)}))
max_epochs = 80
aug_stop_epochs = 8
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(
        type='LinearLR', start_factor=1 / 500, by_epoch=False, begin=0,
        end=500)
]
ema_hook = dict(
    type='EMAHook',
    ema_type='ExpMomentumEMA',
    momentum=1e-4,
    gamma=1000,
    update_buffers=True,
    priority=49)
custom_hooks = [
    ema_hook,
    dict(
        type='PipelineSwitchHook',
        switch_epoch=max_epochs - aug_stop_epochs,
        switch_pipeline={{_base_.final_train_pipeline}}),
    dict(
        type='BatchAugmentSwitchHook',
        switch_epoch=max_epochs - aug_stop_epochs)
]
auto_scale_lr = dict(base_batch_size=32)
