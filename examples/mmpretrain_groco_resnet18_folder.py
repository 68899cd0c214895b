# GroCo inside mmpretrain: mmpretrain's own two-view self-supervisor (BarlowTwins: backbone -> neck ->
# head.loss(z1, z2)), ResNet-18, NonLinearNeck and data pipeline, with rankssl's RankSSLHead handing
# the two views' projections to rankssl's GroCoLoss. Run it with mmpretrain's tools/train.py or
#   python -c "from mmengine.config import Config; from mmengine.runner import Runner; \
#              Runner.from_cfg(Config.fromfile('examples/mmpretrain_groco_resnet18_folder.py')).train()"
# Data: any folder of images under data/my_images (sub-folders allowed; no labels needed).
# mmpretrain's ColorJitter (mmcv-lite 2.2.0) needs NumPy < 2 when hue > 0: the `mmpretrain` extra pins it.
# More views or labels (S2R2, Hydra): model type 'rankssl.MultiViewSelfSupervisor' and MultiView num_views=N.
default_scope = 'mmpretrain'
custom_imports = dict(imports=['mmpretrain.models', 'mmpretrain.datasets', 'mmpretrain.engine'],
                      allow_failed_imports=False)

model = dict(
    type='BarlowTwins',
    data_preprocessor=dict(type='SelfSupDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], to_rgb=True),
    # GroCo's encoder: torchvision-style ResNet, residual branches' last BN zero-initialised
    # (ninatu/learning_by_sorting models/encoder/regular_encoder.py).
    backbone=dict(type='ResNet', depth=18, zero_init_residual=True),
    # GroCo's head: 3 linear layers 2048-d, BN + ReLU, a last BN without affine parameters.
    neck=dict(type='NonLinearNeck', in_channels=512, hid_channels=2048, out_channels=2048, num_layers=3,
              with_bias=False, with_last_bn=True, with_last_bn_affine=False, with_avg_pool=True,
              norm_cfg=dict(type='BN1d')),  # SyncBN for several GPUs, as GroCo's authors
    head=dict(type='rankssl.RankSSLHead', loss=dict(type='rankssl.GroCoLoss', n_negatives=10)),
)

view_pipeline = [
    dict(type='RandomResizedCrop', scale=96, crop_ratio_range=(0.14, 1.0), backend='pillow'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomApply', prob=0.8,
         transforms=[dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1)]),
    dict(type='RandomGrayscale', prob=0.2, keep_channels=True, channel_weights=(0.114, 0.587, 0.2989)),
]
train_dataloader = dict(
    batch_size=256,
    num_workers=4,
    persistent_workers=True,
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='CustomDataset', data_root='data/my_images', with_label=False, pipeline=[
        dict(type='LoadImageFromFile'),
        dict(type='MultiView', num_views=2, transforms=[view_pipeline]),
        dict(type='PackInputs'),
    ]),
)

# GroCo's rule: lr = 0.75 x 32 x batch / 1024, SGD momentum 0.9, weight decay 1e-6, cosine.
optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='SGD', lr=0.75 * 32 * 256 / 1024, momentum=0.9, weight_decay=1e-6))
param_scheduler = [dict(type='CosineAnnealingLR', T_max=100, by_epoch=True, begin=0, end=100)]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=100)
auto_scale_lr = dict(base_batch_size=256, enable=False)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=10),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
)
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend='nccl'))
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
