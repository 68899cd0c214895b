# SimCLR baseline on the embedded digits canvas with lightly's NTXentLoss; same budget as GroCo's recipe.
_base_ = [
    './_base_/datasets/digits.py',
    './_base_/schedules/sgd_coslr.py',
    './_base_/default_runtime.py',
]
max_epochs = 50
warmup_epochs = 5
lr = 0.3 * 256 / 256 * 0.5  # SimCLR's 0.3 x batch / 256, x0.5: the quality benchmark sweep's winner

model = dict(
    type='SimCLR',
    backbone=dict(type='SmallCNN', in_channels=1, widths=(32, 64, 128)),
    neck=dict(type='MLPHead', hidden_dim=512, out_dim=128, num_layers=2),
    loss=dict(type='NTXentLoss', temperature=0.2),
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
