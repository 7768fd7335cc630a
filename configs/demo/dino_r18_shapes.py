# DINO on the demo's shapes set: configs/demo/detr_r18_shapes.py (data,
# backbone trained from scratch, widths, schedule, seed) with DINO's model
# (as configs/dino/...), shrunk to the 64 x 64 images: the backbone's strides
# 8 and 16 plus one level at 32 through mmdet's ChannelMapper (84 positions),
# deformable attention with 4 points on those 3 levels, 20 matching queries
# and up to 12 denoising ones (4 groups of at most 3 boxes, each a positive
# and a negative query), AdamW 8e-4.
# Tuned on the demo set for time to accuracy (tools/demo.sh --compare; 750
# iterations with validation every 250, mAP_50 at 250/500/750): 30 denoising
# queries took 0.18 s per train_step against 0.13 s with 12, for about the
# same curve (0.46/0.70/0.89 against 0.49/0.72/0.90); the LR at 8e-4 gave
# 0.52/0.70/0.97 (DETR's demo diverged at 1e-3, DINO's did not at 8e-4);
# only strides 16 and 32 (20 positions) cost 0.11 s but learned far slower
# (0.28/0.33/0.47).
_base_ = ['./detr_r18_shapes.py']

num_queries = 20
deformable_attention = dict(
    type='DeformableAttention',
    embed_dims={{_base_.embed_dims}},
    num_heads=8,
    num_levels=3,
    num_points=4,
    dropout=0.)
model = dict(
    type='DINO',
    num_queries=num_queries,
    num_feature_levels=3,
    backbone=dict(out_indices=(1, 2)),
    neck=dict(
        type='ChannelMapper',
        in_channels=[32, 64],
        kernel_size=1,
        out_channels={{_base_.embed_dims}},
        act_cfg=None,
        norm_cfg=dict(type='GN', num_groups=32),
        num_outs=3),
    encoder=dict(
        layer_cfg=dict(attn_cfgs=dict(deformable_attention, _delete_=True))),
    decoder=dict(
        layer_cfg=dict(
            attn_cfgs=[{{_base_.attention}}, deformable_attention]),
        post_norm_cfg=dict(type='LN')),
    positional_encoding=dict(offset=0., temperature=20),
    bbox_head=dict(
        type='DINOHead',
        loss_cls=dict(
            _delete_=True,
            type='FocalLoss',
            use_sigmoid=True,
            gamma=2.0,
            alpha=0.25,
            loss_weight=1.0)),
    train_cfg=dict(
        assigner=dict(match_costs=[
            dict(type='FocalLossCost', weight=2.0),
            dict(type='BBoxL1Cost', weight=5.0),
            dict(type='IoUCost', iou_mode='giou', weight=2.0)
        ])),
    dn_cfg=dict(
        label_noise_scale=0.5,
        box_noise_scale=1.0,
        group_cfg=dict(dynamic=True, num_dn_queries=12)),
    test_cfg=dict(max_per_img=num_queries))
optim_wrapper = dict(optimizer=dict(lr=8e-4))
