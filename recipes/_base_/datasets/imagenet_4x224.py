# GroCo's 4x224 setting: two DINO-style pairs of global crops, all four are positives of each other.
_base_ = './imagenet_2x224.py'
views = [
    dict(type='DINOTransform', global_crop_size=224, n_local_views=0, normalize=None),
    dict(type='DINOTransform', global_crop_size=224, n_local_views=0, normalize=None),
]
train_dataloader = dict(dataset=dict(pipeline=[dict(type='MultiView', views=views), dict(type='PackViews')]))
