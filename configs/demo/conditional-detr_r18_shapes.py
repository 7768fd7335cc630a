# Conditional DETR on the demo's shapes set: configs/demo/detr_r18_shapes.py
# with the decoder, classifier and matching cost of Conditional DETR (as
# configs/conditional_detr/...), everything else -- data, backbone, widths,
# queries, schedule, seed -- unchanged, so that the two demos compare the
# models alone (tools/compare_training.py).
_base_ = ['./detr_r18_shapes.py']

conditional_attention = dict(
    type='ConditionalAttention', embed_dims={{_base_.embed_dims}},
    num_heads=8)
model = dict(
    type='ConditionalDETR',
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
