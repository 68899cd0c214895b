# GroCo, ImageNet-1k, ResNet-50, multi-crop 2x224 + 6x96 (only the 2 global crops are positives),
# batch 1024, 100 epochs (paper: kNN 62.3 / linear 71.8).
_base_ = './groco_resnet50_32xb32-coslr-100e_in1k.py'
views = [dict(type='DINOTransform', global_crop_size=224, local_crop_size=96, n_local_views=6,
              local_crop_scale=(0.05, 0.4), normalize=None)]
train_dataloader = dict(dataset=dict(pipeline=[dict(type='MultiView', views=views), dict(type='PackViews')]))
model = dict(loss=dict(n_positive_views=2))
