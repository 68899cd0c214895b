# GroCo, ImageNet-1k, ResNet-50, 2x224 crops, 32 GPUs x 32 = batch 1024, 100 epochs
# (paper: kNN 60.5 / linear 69.2). Every value follows the authors' code,
# ninatu/learning_by_sorting: models/encoder/regular_encoder.py (torchvision ResNet-50 with
# zero_init_residual=True), configs/2views_100ep.yaml (SGD momentum 0.9, no LARC,
# lr = base 0.75 x 32 x batch / 1024 = 24 by train.py's 'linear' rule, weight decay 1e-6,
# 1 warm-up epoch then cosine to 0, mixed precision, SyncBN, 3-layer 2048-d head, top-10
# negatives, steepness 1) and dataloader/transforms.py get_dino_aug_transforms (bicubic
# RandomResizedCrop 224 with scale (0.14, 1), flip 0.5, colour jitter (0.4, 0.4, 0.2, 0.1)
# with p 0.8, grey 0.2, blur p 1.0 / 0.1 and solarize 0 / 0.2 on the two views). lightly's
# DINOTransform gives exactly these once its crop scale is set (its default is (0.4, 1)).
_base_ = [
    './_base_/datasets/imagenet_2x224.py',
    './_base_/schedules/sgd_coslr.py',
    './_base_/default_runtime.py',
]
max_epochs = 100
warmup_epochs = 1
batch_size = 32 * 32
lr = 0.75 * 32 * batch_size / 1024
global_crop_scale = (0.14, 1.0)
views = [dict(type='DINOTransform', global_crop_size=224, global_crop_scale=global_crop_scale,
              n_local_views=0, normalize=None)]
train_dataloader = dict(dataset=dict(pipeline=[dict(type='MultiView', views=views), dict(type='PackViews')]))

model = dict(
    type='GroCo',
    # models/encoder/regular_encoder.py: torchvision's ResNet with zero_init_residual=True
    backbone=dict(type='TorchvisionResNet', depth=50, zero_init_residual=True),
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
