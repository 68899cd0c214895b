# GroCo on the embedded digits canvas: SmallCNN, 3-layer GroCo head, 1 process x batch 256.
# The main job of `rankssl demo`: a few minutes on two CPU cores.
_base_ = [
    './_base_/datasets/digits.py',
    './_base_/schedules/sgd_coslr.py',
    './_base_/default_runtime.py',
]
max_epochs = 50
warmup_epochs = 5
# The paper's rule 0.75 x 32 x batch / 1024 (6 at batch 256) x 0.75: the winner of the
# quality benchmark's sweep (benchmarks/quality.py: x0.5 x1.5 of 3.0, steepness 1 or 4).
lr = 0.75 * 32 * 256 / 1024 * 0.75

model = dict(
    type='GroCo',
    backbone=dict(type='SmallCNN', in_channels=1, widths=(32, 64, 128)),
    neck=dict(type='GroCoProjectionHead', hidden_dim=512, out_dim=512),
    loss=dict(type='GroCoLoss', n_negatives=10, steepness=4.0),  # steepness: the sweep's winner
)
optim_wrapper = dict(optimizer=dict(lr=lr, weight_decay=1e-6))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=True, begin=warmup_epochs, end=max_epochs,
         T_max=max_epochs - warmup_epochs, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=10)
# The main job is reproducible: seeded, deterministic kernels (cuDNN), seeded data workers
# (mmengine seeds each worker from this seed). On a CPU, reruns give identical numbers.
randomness = dict(seed=0, deterministic=True)
# The batch the learning rate above is set for (1 x 256); mmengine rescales lr to the real batch
# when enabled (mmpretrain's tools/train.py --auto-scale-lr).
auto_scale_lr = dict(base_batch_size=256, enable=False)
