# torchvision CIFAR-10 under data/cifar10 (never downloaded; see rankssl.mm.datasets.CIFAR10).
dataset_type = 'CIFAR10'
data_root = 'data/cifar10'
view = dict(type='SimCLRViewTransform', input_size=32, min_scale=0.08, gaussian_blur=0.0, normalize=None)
train_pipeline = [dict(type='MultiView', views=[dict(view, num_views=2)]), dict(type='PackViews')]
eval_pipeline = [dict(type='EvalView'), dict(type='PackViews')]
model = dict(data_preprocessor=dict(
    type='MultiViewDataPreprocessor', mean=[0.4914, 0.4822, 0.4465], std=[0.247, 0.243, 0.261]))

train_dataloader = dict(
    batch_size=256,
    num_workers=8,
    persistent_workers=True,
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type=dataset_type, data_root=data_root, split='train', pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=512,
    num_workers=8,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='KNNEvalDataset',
        bank=dict(type=dataset_type, data_root=data_root, split='train', pipeline=eval_pipeline),
        query=dict(type=dataset_type, data_root=data_root, split='test', pipeline=eval_pipeline)),
)
val_evaluator = [
    dict(type='KNNAccuracy', k=20, temperature=0.07),
    dict(type='KNNAccuracy', k=200, temperature=0.1, prefix='knn200'),
]
test_dataloader = val_dataloader
test_evaluator = val_evaluator
