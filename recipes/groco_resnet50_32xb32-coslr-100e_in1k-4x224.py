# GroCo, ImageNet-1k, ResNet-50, 4x224 global crops (all positives), batch 1024, 100 epochs (paper: kNN 61.8).
_base_ = './groco_resnet50_32xb32-coslr-100e_in1k.py'
views = [  # two DINO-style pairs of global crops
    dict(type='DINOTransform', global_crop_size=224, n_local_views=0, normalize=None),
    dict(type='DINOTransform', global_crop_size=224, n_local_views=0, normalize=None),
]
train_dataloader = dict(dataset=dict(pipeline=[dict(type='MultiView', views=views), dict(type='PackViews')]))
