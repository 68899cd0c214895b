# GroCo on one's own unlabelled images (a folder, any PIL-readable format): ResNet-18 at 64x64,
# GroCo head, 1 process x batch 64, 100 epochs: small enough to train on a CPU for a few thousand
# images. The method follows the GroCo paper (Shvetsova et al. 2023) and the authors' code
# (ninatu/learning_by_sorting): GroCo loss with 10 negatives, lr = 0.75 x 32 x batch / 1024, SGD
# momentum 0.9, weight decay 1e-6, linear warm-up then cosine decay; the 64x64 views and the
# ResNet-18 size are ours, for CPUs.
#   rankssl train groco_resnet18_1xb64-coslr-100e_own-images --data-root /path/to/my_images --epochs 20
_base_ = [
    './_base_/datasets/own_images.py',
    './_base_/schedules/sgd_coslr.py',
    './_base_/default_runtime.py',
]
max_epochs = 100
warmup_epochs = 10
lr = 0.75 * 32 * 64 / 1024

model = dict(
    type='GroCo',
    backbone=dict(type='TorchvisionResNet', depth=18, small_stem=False),
    neck=dict(type='GroCoProjectionHead', hidden_dim=1024, out_dim=1024),
    loss=dict(type='GroCoLoss', n_negatives=10),
)
optim_wrapper = dict(optimizer=dict(lr=lr, weight_decay=1e-6))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=True, begin=warmup_epochs, end=max_epochs,
         T_max=max_epochs - warmup_epochs, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs + 1)
val_cfg = None  # no labels: no kNN validation, no test
test_cfg = None
# The batch the learning rate above is set for (1 x 64); mmengine rescales lr to the real batch
# when enabled (mmpretrain's tools/train.py --auto-scale-lr).
auto_scale_lr = dict(base_batch_size=64, enable=False)
