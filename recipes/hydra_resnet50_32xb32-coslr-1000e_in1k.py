# Hydra on ImageNet-1k, the paper's setting (Wu et al., arXiv:2410.18200): ResNet-50, projector
# 2048-2048-256 ending in LayerNorm, temperature 0.1 (scale 10), global batch 1024 (32 GPUs x 32),
# 1000 epochs, 1,000 classes (500,500 class pairs; the feature filter holds one 512-d row per class).
# MPerClassSampler: 4 images of each of 256 classes in every global batch; each rank gets a
# contiguous share of it, and gather_distributed takes positives/negatives from the whole batch.
# The authors' optimiser is not pinned down here (their v1 code mixes in a MoCo v3 term);
# this recipe uses SGD with SimCLR's learning-rate rule and a cosine schedule.
_base_ = [
    './_base_/datasets/imagenet_2x224.py',
    './_base_/schedules/sgd_coslr.py',
    './_base_/default_runtime.py',
]
max_epochs = 1000
warmup_epochs = 10
batch_size = 1024  # global
num_classes = 1000
lr = 0.3 * batch_size / 256

model = dict(
    type='Hydra',
    backbone=dict(type='TorchvisionResNet', depth=50),
    neck=dict(type='HydraProjectionHead', hidden_dim=2048, out_dim=256, num_layers=3),
    loss=dict(type='HydraLoss', num_classes=num_classes, temperature=0.1, gate_mode='fused',
              pairing='arbitrary', embed_dim=512, hidden_dim=1024, gather_distributed=True, seed=0),
    # As in the authors' v1 code: (L_instance + beta * L_hydra) / (1 + beta), beta = 1; it also guards
    # against the early collapse that pure Hydra and SupCon show at temperature 0.1 on the digits.
    instance_loss=dict(type='NTXentLoss', temperature=0.2, gather_distributed=True),
    pair_weight=1.0,
)
train_dataloader = dict(
    batch_size=32,  # per GPU
    sampler=dict(_delete_=True, type='MPerClassSampler', m=4, batch_size=batch_size),
)
optim_wrapper = dict(optimizer=dict(lr=lr, weight_decay=1e-6))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=True, begin=warmup_epochs, end=max_epochs,
         T_max=max_epochs - warmup_epochs, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=50)
val_evaluator = [dict(type='KNNAccuracy', k=20, temperature=0.07), dict(type='EffectiveRank')]
test_evaluator = val_evaluator
custom_hooks = [dict(type='CurvesHook', interval=1), dict(type='SpectrumHook')]
