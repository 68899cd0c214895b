# Hydra (SimLAP) on ImageNet-1k, the paper's recipe (Wu et al., arXiv:2410.18200, second version),
# as the first author's code pins it: erow/hydra, main_cl.py, PAPER_RECIPE, --method simlap;
# loss cl/losses.py::simlap_loss; projector cl/model.py::build_projector.
# - ResNet-50 (zero-init residual), projector 2048-2048-256 (3 linear layers) ending in LayerNorm;
# - SimLAP loss at temperature 0.1: anchors of one view against the keys of the other view, the sum over
#   positive pairs / number of pairs, one partner class per image by a permutation of the batch;
#   no instance term, no learned scale, no warm-up of the filter alone (those are the v1 code's);
# - LARS (MoCo v3's), lr 0.2 (absolute, not scaled by batch), weight decay 1e-4, momentum 0.9,
#   40 linear warm-up epochs then cosine to 0 (per iteration), 1000 epochs;
# - global batch 1024 (32 GPUs x 32) of random images (DefaultSampler, as the authors' DataLoader):
#   with 1,000 classes most partners have only their own image's views as positives;
# - views: RandomResizedCrop 224 scale (0.08, 1), colour jitter (0.4, 0.4, 0.4, 0.1) p 0.8,
#   grey 0.2, blur p 0.5, flip; mixed precision and SyncBN.
_base_ = [
    './_base_/datasets/imagenet_2x224.py',
    './_base_/schedules/sgd_coslr.py',
    './_base_/default_runtime.py',
]
max_epochs = 1000
warmup_epochs = 40
batch_size = 1024  # global
num_classes = 1000
lr = 0.2

model = dict(
    type='Hydra',
    backbone=dict(type='TorchvisionResNet', depth=50, zero_init_residual=True),
    neck=dict(type='HydraProjectionHead', hidden_dim=2048, out_dim=256, num_layers=3, last_norm='ln'),
    loss=dict(type='HydraLoss', num_classes=num_classes, temperature=0.1, gate_mode='fused',
              pairing='arbitrary', embed_dim=512, hidden_dim=1024, gather_distributed=True, seed=0,
              key_views='other', reduction='pair_mean', pair_draw='permutation'),
)
view = dict(type='SimCLRViewTransform', input_size=224, min_scale=0.08, cj_prob=0.8, cj_strength=0.5,
            random_gray_scale=0.2, gaussian_blur=0.5, sigmas=(0.1, 2.0), hf_prob=0.5, normalize=None)
train_dataloader = dict(
    batch_size=32,  # per GPU
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(pipeline=[dict(type='MultiView', views=[dict(view, num_views=2)]), dict(type='PackViews')]),
)
optim_wrapper = dict(
    type='AmpOptimWrapper', loss_scale='dynamic',
    optimizer=dict(_delete_=True, type='LARS', lr=lr, weight_decay=1e-4, momentum=0.9))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=True, begin=warmup_epochs, end=max_epochs,
         T_max=max_epochs - warmup_epochs, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=50)
val_evaluator = [dict(type='KNNAccuracy', k=20, temperature=0.07), dict(type='EffectiveRank')]
test_evaluator = val_evaluator
custom_hooks = [dict(type='CurvesHook', interval=1), dict(type='SpectrumHook')]
sync_bn = 'torch'
# The batch the learning rate above is set for (32 x 32); mmengine rescales lr to the real batch
# when enabled (mmpretrain's tools/train.py --auto-scale-lr).
auto_scale_lr = dict(base_batch_size=1024, enable=False)
