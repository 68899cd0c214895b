# Hydra on the embedded two-digit numbers (100 classes, 4,950 pairs of distinct classes), in the
# authors' SimLAP mode (erow/hydra cl/losses.py: other-view keys, sum over positive pairs / number of
# pairs, one partner per image by a batch permutation; random batches as main_cl.py), temperature 0.1,
# no instance term. Head: 2 layers (SimLAP: 3), BatchNorm-ended (last_norm='bn'): the authors' LayerNorm end collapsed on
# the embedded digits (not yet re-measured on this data). SGD + cosine as every two-digit recipe, so the
# methods share one budget (the authors' LARS recipe is hydra_resnet50_32xb32-lars-coslr-1000e_in1k).
_base_ = [
    './_base_/datasets/two_digits.py',
    './_base_/schedules/sgd_coslr.py',
    './_base_/default_runtime.py',
]
max_epochs = 50
warmup_epochs = 5
lr = 0.3 * 256 / 256 * 0.5
num_classes = 100

model = dict(
    type='Hydra',
    backbone=dict(type='SmallCNN', in_channels=1, widths=(32, 64, 128)),
    neck=dict(type='HydraProjectionHead', hidden_dim=512, out_dim=128, num_layers=2, last_norm='bn'),
    loss=dict(type='HydraLoss', num_classes=num_classes, temperature=0.1, gate_mode='fused',
              pairing='arbitrary', embed_dim=128, hidden_dim=256, seed=0,
              key_views='other', reduction='pair_mean', pair_draw='permutation'),
)
optim_wrapper = dict(optimizer=dict(lr=lr, weight_decay=1e-6))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=True, begin=warmup_epochs, end=max_epochs,
         T_max=max_epochs - warmup_epochs, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=10)
val_evaluator = [dict(type='KNNAccuracy', k=20, temperature=0.07), dict(type='EffectiveRank')]
# The batch the learning rate above is set for (1 x 256); mmengine rescales lr to the real batch
# when enabled (mmpretrain's tools/train.py --auto-scale-lr).
auto_scale_lr = dict(base_batch_size=256, enable=False)
