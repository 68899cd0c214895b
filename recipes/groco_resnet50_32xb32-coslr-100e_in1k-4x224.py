# GroCo, ImageNet-1k, ResNet-50, 4x224 global crops (all positives), batch 1024, 100 epochs (paper: kNN 61.8).
# Source: ninatu/learning_by_sorting configs/4views_100ep.yaml (as 2views_100ep.yaml: base lr 0.75,
# 1 warm-up epoch, weight decay 1e-6) and dataloader/transforms.py get_dino_aug_transforms(n_augs=4):
# the two DINO global views twice, [view 1, view 2, view 1, view 2], crop scale (0.14, 1).
_base_ = './groco_resnet50_32xb32-coslr-100e_in1k.py'
views = [  # two DINO-style pairs of global crops
    dict(type='DINOTransform', global_crop_size=224, global_crop_scale=(0.14, 1.0), n_local_views=0,
         normalize=None),
    dict(type='DINOTransform', global_crop_size=224, global_crop_scale=(0.14, 1.0), n_local_views=0,
         normalize=None),
]
train_dataloader = dict(dataset=dict(pipeline=[dict(type='MultiView', views=views), dict(type='PackViews')]))
