# GroCo on CIFAR-10: ResNet-18 with the small-image stem, GroCo head, 1 GPU x batch 256, 200 epochs.
_base_ = [
    './_base_/datasets/cifar10.py',
    './_base_/schedules/sgd_coslr.py',
    './_base_/default_runtime.py',
]
max_epochs = 200
warmup_epochs = 10
# The authors' 200-epoch schedule (ninatu/learning_by_sorting configs/2views_200ep.yaml): base lr
# 0.375 (half the 100-epoch 0.75), lr = base x 32 x batch / 1024 (train.py), 10 warm-up epochs,
# SGD momentum 0.9, weight decay 1e-6. The crops are SimCLR-style for small images (ours: the
# paper has no CIFAR-10 / STL-10 runs).
lr = 0.375 * 32 * 256 / 1024

model = dict(
    type='GroCo',
    backbone=dict(type='TorchvisionResNet', depth=18, small_stem=True),
    neck=dict(type='GroCoProjectionHead', hidden_dim=2048, out_dim=2048),
    loss=dict(type='GroCoLoss', n_negatives=10),
)
optim_wrapper = dict(optimizer=dict(lr=lr, weight_decay=1e-6))
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
