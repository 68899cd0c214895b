# Hydra on CIFAR-10 (with labels): ResNet-18 with a 32x32 stem, LayerNorm head, 1 GPU x batch 512.
# Loss and head are SimLAP's defaults (erow/hydra cl/losses.py::simlap_loss, cl/model.py::build_projector:
# other-view keys, sum over positive pairs / number of pairs, one partner per image by a batch
# permutation; 3 bias-free layers ending in LayerNorm), the head 128 wide for CIFAR.
# MPerClassSampler: 64 images of each of 8 classes per batch.
_base_ = [
    './_base_/datasets/cifar10.py',
    './_base_/schedules/sgd_coslr.py',
    './_base_/default_runtime.py',
]
max_epochs = 200
warmup_epochs = 10
batch_size = 512
num_classes = 10
lr = 0.3 * batch_size / 256

model = dict(
    type='Hydra',
    backbone=dict(type='TorchvisionResNet', depth=18, small_stem=True),
    neck=dict(type='HydraProjectionHead', hidden_dim=2048, out_dim=128),
    loss=dict(type='HydraLoss', num_classes=num_classes, temperature=0.1, gate_mode='fused',
              pairing='arbitrary', seed=0),
    # (L_instance + beta * L_hydra) / (1 + beta), beta = 1: the mixing rule of the authors' v1 code
    # (moco/builder.py), but with SimCLR's NT-Xent as the instance term, not v1's MoCo v3 (momentum
    # encoder + predictor): a rankssl variant, not the authors' recipe (that is the in1k LARS recipe).
    instance_loss=dict(type='NTXentLoss', temperature=0.2),
    pair_weight=1.0,
)
train_dataloader = dict(
    batch_size=batch_size,
    sampler=dict(_delete_=True, type='MPerClassSampler', m=64, batch_size=batch_size),
)
optim_wrapper = dict(optimizer=dict(lr=lr, weight_decay=1e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=True, begin=warmup_epochs, end=max_epochs,
         T_max=max_epochs - warmup_epochs, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=10)
val_evaluator = [
    dict(type='KNNAccuracy', k=20, temperature=0.07),
    dict(type='KNNAccuracy', k=200, temperature=0.1, prefix='knn200'),
    dict(type='EffectiveRank'),
]
test_evaluator = val_evaluator
custom_hooks = [dict(type='CurvesHook', interval=1), dict(type='SpectrumHook')]
# The batch the learning rate above is set for (1 x 512); mmengine rescales lr to the real batch
# when enabled (mmpretrain's tools/train.py --auto-scale-lr).
auto_scale_lr = dict(base_batch_size=512, enable=False)
