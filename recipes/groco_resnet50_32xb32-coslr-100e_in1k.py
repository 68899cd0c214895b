# GroCo, ImageNet-1k, ResNet-50, 2x224 DINO-style crops, 32 GPUs x 32 = batch 1024, 100 epochs
# (paper: kNN 60.5 / linear 69.2). SGD momentum 0.9, lr 0.75 x 32 x 1024 / 1024 = 24,
# weight decay 1e-6, cosine with 10 warm-up epochs, mixed precision, SyncBN.
_base_ = [
    './_base_/datasets/imagenet_2x224.py',
    './_base_/schedules/sgd_coslr.py',
    './_base_/default_runtime.py',
]
max_epochs = 100
warmup_epochs = 10
batch_size = 32 * 32
lr = 0.75 * 32 * batch_size / 1024

model = dict(
    type='GroCo',
    backbone=dict(type='TorchvisionResNet', depth=50),
    neck=dict(type='GroCoProjectionHead', hidden_dim=2048, out_dim=2048),
    loss=dict(type='GroCoLoss', n_negatives=10, gather_distributed=True),
)
optim_wrapper = dict(
    type='AmpOptimWrapper', loss_scale='dynamic',
    optimizer=dict(type='SGD', lr=lr, momentum=0.9, weight_decay=1e-6))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=True, begin=warmup_epochs, end=max_epochs,
         T_max=max_epochs - warmup_epochs, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=10)
sync_bn = 'torch'
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=3), logger=dict(interval=50))
auto_scale_lr = dict(base_batch_size=batch_size, enable=False)
