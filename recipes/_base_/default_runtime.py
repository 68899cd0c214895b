# Runtime shared by every rankssl recipe (mmengine config).
default_scope = 'rankssl'  # unprefixed types resolve in rankssl, then mmengine

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=5),  # progress lines with ETA
    param_scheduler=dict(type='ParamSchedulerHook'),
    # mmengine's CheckpointHook, plus: atomic writes (temp file, fsync, rename), a save at
    # every validation and on SIGTERM/SIGINT, random-state continuity on resume
    checkpoint=dict(type='AtomicCheckpointHook', interval=10, max_keep_ckpts=2, save_last=True),
    sampler_seed=dict(type='DistSamplerSeedHook'),
)
# scalars.json, loss.png and metrics.png in the work dir
custom_hooks = [
    dict(type='CurvesHook', interval=1),
    dict(type='FlushDenormalHook'),  # subnormal floats make CPU back-prop ~10x slower
]

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    # `rankssl train` switches to gloo without GPUs. timeout (seconds): how long a process
    # waits for a frozen peer before failing; unset = 300 on CPU (gloo), torch's default on GPUs
    dist_cfg=dict(backend='nccl'),
)
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='Visualizer', vis_backends=vis_backends)
log_processor = dict(window_size=10, by_epoch=True)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
