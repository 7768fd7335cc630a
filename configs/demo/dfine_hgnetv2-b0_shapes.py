# D-FINE on the demo's shapes set: configs/demo/detr_r18_shapes.py (data,
# schedule, seed, AdamW) with D-FINE's model (as
# configs/dfine/dfine_hgnetv2-s_8xb4-132e_coco.py) shrunk to the 64 x 64
# images as the RT-DETRv2 demo (configs/demo/rtdetrv2_r18vd_shapes.py):
# HGNetV2-B0 trained from scratch, strides 8, 16 and 32 (84 positions, the
# proposals), a 128-wide D-FINE hybrid encoder (FFN 256), 3 decoder layers of
# (3, 6, 3)-point attention (FFN 256; FDR needs layers to distil into), 20
# queries and up to 6 denoising queries, AdamW 8e-4.
_base_ = ['./rtdetrv2_r18vd_shapes.py']

embed_dims = 128
model = dict(
    type='DFINE',
    backbone=dict(
        _delete_=True,
        type='HGNetV2',
        arch='B0',
        use_lab=True,
        out_indices=(1, 2, 3)),
    neck=dict(type='DFINEHybridEncoder', in_channels=[256, 512, 1024]),
    decoder=dict(
        num_layers=3,
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
    bbox_head=dict(type='DFINEHead'))
