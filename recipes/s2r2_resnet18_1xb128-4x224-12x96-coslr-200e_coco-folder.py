# S2R2 on scene-centric images (MS-COCO style), the paper's second data set: an image folder
# without labels, ResNet-18, 1 GPU x 128 images x 16 views (4 global 224-pixel crops and
# 12 local 96-pixel crops), 200 epochs.
#
# Data: torchvision's ImageFolder needs one sub-folder per "class"; for COCO make one:
#   mkdir -p data/coco-folder/train && ln -s /path/to/coco/train2017 data/coco-folder/train/images
# The kNN validation measures transfer to object-centric labels on STL-10 (data/stl10,
# train = bank, test = queries); point it at any labelled image folders instead.
# Provenance: S2R2 (Varamesh et al., arXiv:2010.07258) has no public code and only its abstract is
# on record: it fixes many views per image, every view a query ranking all other views of the batch,
# loss 1 - mean AP, and STL-10 / MS-COCO as data. Everything else here is rankssl's choice, not the
# paper's: the AP estimator (binned, FastAP-style) and its bins, the number and sizes of the views,
# the backbone (ResNet-18 / SmallCNN), head, optimiser, learning rate and schedule.
_base_ = [
    './_base_/schedules/sgd_coslr.py',
    './_base_/default_runtime.py',
]
max_epochs = 200
warmup_epochs = 10
lr = 0.3 * 128 / 256  # SimCLR's 0.3 x batch / 256 with SGD

model = dict(
    type='S2R2',
    backbone=dict(type='TorchvisionResNet', depth=18, small_stem=False),
    neck=dict(type='MLPHead', hidden_dim=2048, out_dim=128, num_layers=2),
    loss=dict(type='S2R2Loss', estimator='binned'),  # the estimator's defaults: within 0.01 of exact AP
    data_preprocessor=dict(
        type='MultiViewDataPreprocessor', mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
)
global_view = dict(type='SimCLRViewTransform', input_size=224, min_scale=0.14, normalize=None)
local_view = dict(type='SimCLRViewTransform', input_size=96, min_scale=0.05, normalize=None)
train_pipeline = [
    dict(type='MultiView', views=[dict(global_view, num_views=4), dict(local_view, num_views=12)]),
    dict(type='PackViews'),
]
eval_pipeline = [dict(type='EvalView'), dict(type='PackViews')]
train_dataloader = dict(
    batch_size=128,
    num_workers=10,
    persistent_workers=True,
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='ImageFolder', data_root='data/coco-folder/train', pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=512,
    num_workers=8,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='KNNEvalDataset',
        bank=dict(type='STL10', data_root='data/stl10', split='train', pipeline=eval_pipeline),
        query=dict(type='STL10', data_root='data/stl10', split='test', pipeline=eval_pipeline)),
)
val_evaluator = dict(type='KNNAccuracy', k=20, temperature=0.07)
test_dataloader = val_dataloader
test_evaluator = val_evaluator
optim_wrapper = dict(optimizer=dict(lr=lr, weight_decay=1e-6))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=True, begin=warmup_epochs, end=max_epochs,
         T_max=max_epochs - warmup_epochs, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=10)
# The batch the learning rate above is set for (1 x 128); mmengine rescales lr to the real batch
# when enabled (mmpretrain's tools/train.py --auto-scale-lr).
auto_scale_lr = dict(base_batch_size=128, enable=False)
