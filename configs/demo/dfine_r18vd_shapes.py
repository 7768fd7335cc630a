# D-FINE on the demo's shapes set: the RT-DETRv2 demo
# (configs/demo/rtdetrv2_r18vd_shapes.py: data, schedule, seed, AdamW 8e-4,
# ResNet-18-vd at 16 base channels, 128 wide, 20 queries, up to 6 denoising
# queries) with D-FINE's parts (configs/dfine/): its hybrid encoder (SCDown,
# GELAN fusion; FFN 256), 2 decoder layers of (3, 6, 3)-point attention with
# the gate, FDR boxes, LQE, FGL and DDF.
# Tuned for time to accuracy on 800-iteration runs (mAP_50 at 500 / 600,
# seconds per logged iteration, 2-core Intel Xeon AMX, runs overlapping other
# work): D-FINE's own backbone HGNetV2-B0 with 3 decoder layers: 0.512 /
# 0.851, 0.31 s; ResNet-18-vd, 3 layers: 0.826 / 0.923, 0.24 s; 2 layers
# (this config): 0.851 / 0.950, 0.22 s.
_base_ = ['./rtdetrv2_r18vd_shapes.py']

embed_dims = 128
model = dict(
    type='DFINE',
    neck=dict(type='DFINEHybridEncoder'),
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
                    type='DFINEDeformableAttention',
                    embed_dims=embed_dims,
                    num_heads=8,
                    num_points=(3, 6, 3),
                    dropout=0.)
            ],
            operation_order=('self_attn', 'norm', 'cross_attn', 'ffn',
                             'norm'))),
    bbox_head=dict(type='DFINEHead'))
