# SimCLR baseline on CIFAR-10 (lightly NTXentLoss), same backbone and budget as GroCo's CIFAR recipe.
_base_ = [
    './_base_/datasets/cifar10.py',
    './_base_/schedules/sgd_coslr.py',
    './_base_/default_runtime.py',
]
max_epochs = 200
warmup_epochs = 10
lr = 0.06 * 256 / 64  # lightly's CIFAR-10 benchmark setting (SGD 0.06 x batch / 64)

model = dict(
    type='SimCLR',
    backbone=dict(type='TorchvisionResNet', depth=18, small_stem=True),
    neck=dict(type='MLPHead', hidden_dim=512, out_dim=128, num_layers=2),
    loss=dict(type='NTXentLoss', temperature=0.5),
)
optim_wrapper = dict(optimizer=dict(lr=lr, weight_decay=5e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=True, begin=warmup_epochs, end=max_epochs,
         T_max=max_epochs - warmup_epochs, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=10)
# The batch the learning rate above is set for (1 x 256); mmengine rescales lr to the real batch
# when enabled (mmpretrain's tools/train.py --auto-scale-lr).
auto_scale_lr = dict(base_batch_size=256, enable=False)
