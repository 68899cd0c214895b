# GroCo's multi-crop setting: 2 global 224 crops (positives) + 6 local 96 crops (anchors only).
_base_ = './imagenet_2x224.py'
views = [dict(type='DINOTransform', global_crop_size=224, local_crop_size=96, n_local_views=6,
              local_crop_scale=(0.05, 0.4), normalize=None)]
train_dataloader = dict(dataset=dict(pipeline=[dict(type='MultiView', views=views), dict(type='PackViews')]))
