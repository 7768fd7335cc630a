# DAB-DETR R50 on COCO, mmdet's recipe (dab-detr_r50_8xb2-50e_coco.py, 42.3
# box AP in mmdet's model zoo). Conditional DETR's recipe (300 queries,
# conditional attentions, focal classification, 50 epochs) with queries that
# are 4-D anchor boxes refined layer by layer and width/height-modulated
# cross-attention; and, as mmdet's: no dropout, PReLU FFNs, sine positions at
# temperature 20, focal loss weight 1, all 300 queries' detections kept.
_base_ = '../conditional_detr/conditional-detr_r50_8xb2-50e_coco.py'

no_dropout_attention = dict(
    type='MultiheadAttention', embed_dims=256, num_heads=8, attn_drop=0.,
    proj_drop=0.)
conditional_attention = dict(
    type='ConditionalAttention', embed_dims=256, num_heads=8)
prelu_ffn = dict(ffn_drop=0., act_cfg=dict(_delete_=True, type='PReLU'))
model = dict(
    type='DABDETR',
    positional_encoding=dict(temperature=20),
    encoder=dict(
        layer_cfg=dict(attn_cfgs=no_dropout_attention, ffn_cfgs=prelu_ffn)),
    decoder=dict(
        layer_cfg=dict(
            attn_cfgs=[
                dict(conditional_attention, cross_attn=False),
                dict(conditional_attention, cross_attn=True)
            ],
            ffn_cfgs=prelu_ffn)),
    bbox_head=dict(reference_eps=1e-3, loss_cls=dict(loss_weight=1.0)),
    train_cfg=dict(
        assigner=dict(match_costs=[
            dict(type='FocalLossCost', weight=2.0, eps=1e-8),
            dict(type='BBoxL1Cost', weight=5.0),
            dict(type='IoUCost', iou_mode='giou', weight=2.0)
        ])),
    test_cfg=dict(max_per_img=300))

param_scheduler = [
    dict(
        type='MultiStepLR',
        begin=0,
        end=50,
        by_epoch=True,
        milestones=[40],
        gamma=0.1)
]
