custom_hooks = [
    dict(interval=1, type='CurvesHook'),
]
dataset_type = 'DigitsCanvas'
default_hooks = dict(
    checkpoint=dict(interval=20, max_keep_ckpts=1, type='CheckpointHook'),
    logger=dict(interval=50, type='LoggerHook'),
    param_scheduler=dict(type='ParamSchedulerHook'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    timer=dict(type='IterTimerHook'))
default_scope = 'rankssl'
env_cfg = dict(
    cudnn_benchmark=False,
    dist_cfg=dict(backend='nccl'),
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0))
eval_pipeline = [
    dict(type='EvalView'),
    dict(type='PackViews'),
]
load_from = None
log_level = 'INFO'
log_processor = dict(by_epoch=True, window_size=10)
lr = 0.44999999999999996
max_epochs = 50
model = dict(
    backbone=dict(in_channels=1, type='SmallCNN', widths=(
        32,
        64,
        128,
    )),
    data_preprocessor=dict(
        mean=[
            0.2,
        ], std=[
            0.25,
        ], type='MultiViewDataPreprocessor'),
    loss=dict(estimator='binned', num_bins=640, type='S2R2Loss'),
    neck=dict(hidden_dim=512, num_layers=2, out_dim=128, type='MLPHead'),
    type='S2R2')
num_views = 4
optim_wrapper = dict(
    optimizer=dict(lr=0.45, momentum=0.9, type='SGD', weight_decay=1e-06),
    type='OptimWrapper')
param_scheduler = [
    dict(
        begin=0,
        by_epoch=True,
        convert_to_iter_based=True,
        end=5,
        start_factor=0.001,
        type='LinearLR'),
    dict(
        T_max=15,
        begin=5,
        by_epoch=True,
        convert_to_iter_based=True,
        end=20,
        eta_min=0.0,
        type='CosineAnnealingLR'),
]
randomness = dict(deterministic=False, seed=0)
resume = False
test_cfg = dict(type='TestLoop')
test_dataloader = dict(
    batch_size=512,
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        bank=dict(
            pipeline=[
                dict(type='EvalView'),
                dict(type='PackViews'),
            ],
            split='train',
            type='DigitsCanvas'),
        query=dict(
            pipeline=[
                dict(type='EvalView'),
                dict(type='PackViews'),
            ],
            split='test',
            type='DigitsCanvas'),
        type='KNNEvalDataset'),
    num_workers=0,
    sampler=dict(shuffle=False, type='DefaultSampler'))
test_evaluator = [
    dict(k=20, temperature=0.07, type='KNNAccuracy'),
    dict(k=200, prefix='knn200', temperature=0.1, type='KNNAccuracy'),
    dict(type='LinearProbeAccuracy'),
]
train_cfg = dict(max_epochs=20, type='EpochBasedTrainLoop', val_interval=2)
train_dataloader = dict(
    batch_size=256,
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        pipeline=[
            dict(
                type='MultiView',
                views=[
                    dict(
                        cj_bright=0.8,
                        cj_contrast=0.8,
                        cj_hue=0.0,
                        cj_prob=0.8,
                        cj_sat=0.0,
                        cj_strength=0.5,
                        gaussian_blur=0.0,
                        hf_prob=0.0,
                        input_size=32,
                        min_scale=0.25,
                        normalize=None,
                        num_views=4,
                        random_gray_scale=0.0,
                        type='SimCLRViewTransform'),
                ]),
            dict(type='PackViews'),
        ],
        split='train',
        type='DigitsCanvas'),
    drop_last=True,
    num_workers=0,
    sampler=dict(shuffle=True, type='DefaultSampler'))
train_pipeline = [
    dict(
        type='MultiView',
        views=[
            dict(
                cj_bright=0.8,
                cj_contrast=0.8,
                cj_hue=0.0,
                cj_prob=0.8,
                cj_sat=0.0,
                cj_strength=0.5,
                gaussian_blur=0.0,
                hf_prob=0.0,
                input_size=32,
                min_scale=0.25,
                normalize=None,
                num_views=4,
                random_gray_scale=0.0,
                type='SimCLRViewTransform'),
        ]),
    dict(type='PackViews'),
]
val_cfg = dict(type='ValLoop')
val_dataloader = dict(
    batch_size=512,
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        bank=dict(
            pipeline=[
                dict(type='EvalView'),
                dict(type='PackViews'),
            ],
            split='train',
            type='DigitsCanvas'),
        query=dict(
            pipeline=[
                dict(type='EvalView'),
                dict(type='PackViews'),
            ],
            split='test',
            type='DigitsCanvas'),
        type='KNNEvalDataset'),
    num_workers=0,
    sampler=dict(shuffle=False, type='DefaultSampler'))
val_evaluator = dict(k=20, temperature=0.07, type='KNNAccuracy')
view = dict(
    cj_bright=0.8,
    cj_contrast=0.8,
    cj_hue=0.0,
    cj_prob=0.8,
    cj_sat=0.0,
    cj_strength=0.5,
    gaussian_blur=0.0,
    hf_prob=0.0,
    input_size=32,
    min_scale=0.25,
    normalize=None,
    random_gray_scale=0.0,
    type='SimCLRViewTransform')
vis_backends = [
    dict(type='LocalVisBackend'),
]
visualizer = dict(
    type='Visualizer', vis_backends=[
        dict(type='LocalVisBackend'),
    ])
warmup_epochs = 5
work_dir = 'benchmarks/convergence/runs/S2R2_lr0.45_num_bins640_s0'
