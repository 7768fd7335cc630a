# DINO-4scale R50 on COCO, mmdet's recipe (dino-4scale_r50_8xb2-12e_coco.py,
# 49.0 box AP in mmdet's model zoo): two-stage Deformable DETR with box
# refinement, 900 matching queries plus up to 100 denoising ones (label noise
# 0.5, box noise 1.0), no dropout, FFN 2048, sine positions at temperature 20,
# focal loss weight 1, 300 detections per image; AdamW 1e-4 for 12 epochs
# with the LR dropped at 11, 8 GPUs x 2 images.
_base_ = '../deformable_detr/deformable-detr-refine-twostage_r50_16xb2-50e_coco.py'  # noqa

deformable_attention = dict(
    type='DeformableAttention', embed_dims=256, num_levels=4, dropout=0.)
ffn = dict(feedforward_channels=2048, ffn_drop=0.)
model = dict(
    type='DINO',
    num_queries=900,
    encoder=dict(
        layer_cfg=dict(attn_cfgs=deformable_attention, ffn_cfgs=ffn)),
    decoder=dict(
        layer_cfg=dict(
            attn_cfgs=[
                dict(
                    type='MultiheadAttention',
                    embed_dims=256,
                    num_heads=8,
                    attn_drop=0.,
                    proj_drop=0.), deformable_attention
            ],
            ffn_cfgs=ffn),
        post_norm_cfg=dict(_delete_=True, type='LN')),
    positional_encoding=dict(offset=0.0, temperature=20),
    bbox_head=dict(type='DINOHead', loss_cls=dict(loss_weight=1.0)),
    dn_cfg=dict(
        label_noise_scale=0.5,
        box_noise_scale=1.0,
        group_cfg=dict(dynamic=True, num_groups=None, num_dn_queries=100)),
    test_cfg=dict(max_per_img=300))

optim_wrapper = dict(
    optimizer=dict(lr=0.0001),
    paramwise_cfg=dict(
        _delete_=True, custom_keys={'backbone': dict(lr_mult=0.1)}))
max_epochs = 12
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[11],
        gamma=0.1)
]
auto_scale_lr = dict(base_batch_size=16)
