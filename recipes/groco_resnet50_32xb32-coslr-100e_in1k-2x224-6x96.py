# GroCo, ImageNet-1k, ResNet-50, multi-crop 2x224 + 6x96 (only the 2 global crops are positives),
# batch 1024, 100 epochs (paper: kNN 62.3 / linear 71.8).
# Source: ninatu/learning_by_sorting configs/multicrop_100ep.yaml (base lr 0.75, weight decay 1e-6,
# n_pos_augs 2, and 10 warm-up epochs: unlike the 2- and 4-view 100-epoch configs, which use 1) and
# dataloader/transforms.py get_dino_aug_multicrop_transforms: global crops 224 with scale (0.14, 1),
# six local crops 96 with scale (0.05, 0.14), flip 0.5, colour jitter p 0.8, grey 0.2, blur p 0.5.
_base_ = './groco_resnet50_32xb32-coslr-100e_in1k.py'
warmup_epochs = 10
max_epochs = 100
views = [dict(type='DINOTransform', global_crop_size=224, global_crop_scale=(0.14, 1.0), local_crop_size=96,
              n_local_views=6, local_crop_scale=(0.05, 0.14), normalize=None)]
train_dataloader = dict(dataset=dict(pipeline=[dict(type='MultiView', views=views), dict(type='PackViews')]))
model = dict(loss=dict(n_positive_views=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=True, begin=warmup_epochs, end=max_epochs,
         T_max=max_epochs - warmup_epochs, convert_to_iter_based=True),
]
