# Conditional DETR R50 on COCO, mmdet's recipe
# (conditional-detr_r50_8xb2-50e_coco.py, 40.9 box AP in mmdet's model zoo):
# DETR R50 with 300 queries, conditional cross-attention around reference
# points, sigmoid focal classification (loss and matching cost x 2), and 50
# epochs with the LR dropped at 40.
_base_ = '../detr/detr_r50_8xb2-150e_coco.py'

conditional_attention = dict(
    type='ConditionalAttention', embed_dims=256, num_heads=8, attn_drop=0.1)
model = dict(
    type='ConditionalDETR',
    num_queries=300,
    decoder=dict(
        layer_cfg=dict(attn_cfgs=[
            dict(conditional_attention, cross_attn=False),
            dict(conditional_attention, cross_attn=True)
        ])),
    bbox_head=dict(
        loss_cls=dict(
            _delete_=True,
            type='FocalLoss',
            use_sigmoid=True,
            gamma=2.0,
            alpha=0.25,
            loss_weight=2.0)),
    train_cfg=dict(
        assigner=dict(match_costs=[
            dict(type='FocalLossCost', weight=2.0),
            dict(type='BBoxL1Cost', weight=5.0),
            dict(type='IoUCost', iou_mode='giou', weight=2.0)
        ])))

train_cfg = dict(max_epochs=50)
param_scheduler = [dict(type='MultiStepLR', end=50, milestones=[40])]
