# RT-DETRv2 on the demo's shapes set: configs/demo/detr_r18_shapes.py (data,
# schedule, seed, AdamW) with RT-DETRv2's model (as
# configs/rtdetr/rtdetrv2_r18vd_4xb4-120e_coco.py) shrunk to the 64 x 64
# images: ResNet-18-vd at 16 base channels trained from scratch, strides 8,
# 16 and 32 (84 positions, the proposals), a 128-wide hybrid encoder (FFN
# 256, one RepVGG block per CSP layer), 2 decoder layers of 3-level
# deformable attention (FFN 256), 20 queries picked from the proposals and up
# to 6 denoising queries, AdamW 8e-4 (as the DINO demo).
# Tuned for time to accuracy on 800-iteration runs (mAP_50 at 600 / 700,
# seconds per iteration): the shape above with 3 decoder layers, 3 RepVGG
# blocks, FFNs 512 and 12 denoising queries: 0.930 / 0.941, 0.165 s; one
# RepVGG block and FFNs 256: 0.860 / 0.944, 0.125 s; and 2 decoder layers,
# 6 denoising queries (this config): 0.871 / 0.929, 0.107 s.
_base_ = ['./detr_r18_shapes.py']

embed_dims = 128
num_queries = 20
model = dict(
    _delete_=True,
    type='RTDETR',
    num_queries=num_queries,
    data_preprocessor={{_base_.model.data_preprocessor}},
    backbone=dict(
        type='PResNet',
        depth=18,
        base_channels=16,
        stem_channels=16,
        num_stages=4,
        out_indices=(1, 2, 3),
        frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        init_cfg=None),
    neck=dict(
        type='HybridEncoder',
        in_channels=[32, 64, 128],
        hidden_dim=embed_dims,
        num_heads=8,
        dim_feedforward=2 * embed_dims,
        expansion=0.5,
        depth_mult=0.34),
    decoder_in_channels=[embed_dims] * 3,
    decoder=dict(
        num_layers=2,
        layer_cfg=dict(
            attn_cfgs=[
                dict(
                    type='MultiheadAttention',
                    embed_dims=embed_dims,
                    num_heads=8,
                    attn_drop=0.,
                    proj_drop=0.),
                dict(
                    type='DeformableAttention',
                    embed_dims=embed_dims,
                    num_heads=8,
                    num_levels=3,
                    num_points=4,
                    dropout=0.)
            ],
            ffn_cfgs=dict(
                embed_dims=embed_dims,
                feedforward_channels=2 * embed_dims,
                ffn_drop=0.),
            operation_order=('self_attn', 'norm', 'cross_attn', 'norm',
                             'ffn', 'norm'))),
    bbox_head=dict(
        type='RTDETRHead',
        num_classes=3,
        embed_dims=embed_dims,
        loss_cls=dict(
            type='RTDETRVarifocalLoss',
            use_sigmoid=True,
            alpha=0.75,
            gamma=2.0,
            loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=5.0),
        loss_iou=dict(type='GIoULoss', loss_weight=2.0)),
    dn_cfg=dict(
        label_noise_scale=0.5,
        box_noise_scale=1.0,
        group_cfg=dict(dynamic=True, num_dn_queries=6)),
    train_cfg=dict(
        assigner=dict(
            type='HungarianAssigner',
            match_costs=[
                dict(type='FocalLossCost', weight=2.0, eps=1e-8),
                dict(type='BBoxL1Cost', weight=5.0),
                dict(type='IoUCost', iou_mode='giou', weight=2.0)
            ])),
    test_cfg=dict(max_per_img=num_queries))
optim_wrapper = dict(optimizer=dict(lr=8e-4))
