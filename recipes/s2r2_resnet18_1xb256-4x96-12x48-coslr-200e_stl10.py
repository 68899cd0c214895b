# S2R2 on STL-10 (train+unlabeled, 96x96), the paper's first data set; ResNet-18 with the
# ImageNet stem, MLP head, 1 GPU x 256 images x 16 views (4 global 96-pixel crops and
# 12 local 48-pixel crops: 4,096 queries per batch), 200 epochs, kNN on train/test.
# Provenance: S2R2 (Varamesh et al., arXiv:2010.07258) has no public code and only its abstract is
# on record: it fixes many views per image, every view a query ranking all other views of the batch,
# loss 1 - mean AP, and STL-10 / MS-COCO as data. Everything else here is rankssl's choice, not the
# paper's: the AP estimator (binned, FastAP-style) and its bins, the number and sizes of the views,
# the backbone (ResNet-18 / SmallCNN), head, optimiser, learning rate and schedule.
_base_ = [
    './_base_/datasets/stl10.py',
    './_base_/schedules/sgd_coslr.py',
    './_base_/default_runtime.py',
]
max_epochs = 200
warmup_epochs = 10
lr = 0.3 * 256 / 256  # SimCLR's 0.3 x batch / 256 with SGD

model = dict(
    type='S2R2',
    backbone=dict(type='TorchvisionResNet', depth=18, small_stem=False),
    neck=dict(type='MLPHead', hidden_dim=2048, out_dim=128, num_layers=2),
    loss=dict(type='S2R2Loss', estimator='binned'),  # the estimator's defaults: within 0.01 of exact AP
)
global_view = dict(type='SimCLRViewTransform', input_size=96, min_scale=0.14, normalize=None)
local_view = dict(type='SimCLRViewTransform', input_size=48, min_scale=0.05, normalize=None)
train_pipeline = [
    dict(type='MultiView', views=[dict(global_view, num_views=4), dict(local_view, num_views=12)]),
    dict(type='PackViews'),
]
train_dataloader = dict(batch_size=256, dataset=dict(pipeline=train_pipeline))
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
