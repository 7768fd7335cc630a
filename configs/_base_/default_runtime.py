# mmdet's default runtime in the detr_plugin scope: types resolve to this
# package first, then to mmdet and mmengine.
default_scope = 'detr_plugin'
custom_imports = dict(imports=['detr_plugin'], allow_failed_imports=False)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # mmengine's CheckpointHook, but a kill while saving never leaves a
    # truncated file for --resume (detr_plugin.engine.hooks)
    checkpoint=dict(type='AtomicCheckpointHook', interval=1),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='DetVisualizationHook'),
    # stops on a NaN/inf loss before the optimizer steps on it, naming the
    # iteration and loss term (action='skip' skips such steps, counted)
    nonfinite_loss=dict(type='NonFiniteLossHook'),
    # before the first iteration (train, val, test): image files, segment
    # maps, num_classes and the evaluator's file of the runner's datasets,
    # one error listing every problem (the annotations are checked as the
    # datasets load them)
    data_check=dict(type='DataCheckHook'))

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    # tools/train.py switches to gloo when CUDA is unavailable
    dist_cfg=dict(backend='nccl'),
)

vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(
    type='DetLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=True)

log_level = 'INFO'
load_from = None
resume = False
