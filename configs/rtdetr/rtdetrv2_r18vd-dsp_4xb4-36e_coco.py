# RT-DETRv2-S with discrete sampling (the official rtdetrv2_r18vd_dsp_3x_coco,
# 47.4 box AP on val2017): the R18vd model whose decoder reads one cell per
# sampling point instead of interpolating (no grid_sample in an exported
# graph; the sampling offsets are then frozen), fine-tuned for 36 epochs from
# an R18vd checkpoint (converted: tools/convert_checkpoint.py --from rtdetr
# rtdetrv2_r18vd_120e_coco.pth r18vd.pth; then --cfg-options
# load_from=r18vd.pth), augmentation off for the last 3.
_base_ = './rtdetrv2_r18vd_4xb4-120e_coco.py'

deformable_attention = dict(
    type='DeformableAttention',
    embed_dims=256,
    num_heads=8,
    num_levels=3,
    num_points=4,
    dropout=0.,
    sampling='discrete')
model = dict(
    decoder=dict(
        layer_cfg=dict(
            attn_cfgs=[
                dict(
                    type='MultiheadAttention',
                    embed_dims=256,
                    num_heads=8,
                    attn_drop=0.,
                    proj_drop=0.), deformable_attention
            ])))
max_epochs = 36
train_cfg = dict(max_epochs=max_epochs)
custom_hooks = [
    {{_base_.ema_hook}},
    dict(
        type='PipelineSwitchHook',
        switch_epoch=max_epochs - 3,
        switch_pipeline={{_base_.final_train_pipeline}}),
    dict(type='BatchAugmentSwitchHook', switch_epoch=max_epochs - 3)
]
