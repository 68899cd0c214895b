# torchvision STL-10 under data/stl10 (never downloaded): train on train+unlabeled, kNN on train/test.
dataset_type = 'STL10'
data_root = 'data/stl10'
view = dict(type='SimCLRViewTransform', input_size=96, min_scale=0.08, normalize=None)
train_pipeline = [dict(type='MultiView', views=[dict(view, num_views=2)]), dict(type='PackViews')]
eval_pipeline = [dict(type='EvalView'), dict(type='PackViews')]
model = dict(data_preprocessor=dict(
    type='MultiViewDataPreprocessor', mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]))

train_dataloader = dict(
    batch_size=256,
    num_workers=8,
    persistent_workers=True,
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type=dataset_type, data_root=data_root, split='train+unlabeled', pipeline=train_pipeline),
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
val_evaluator = dict(type='KNNAccuracy', k=20, temperature=0.07)
test_dataloader = val_dataloader
test_evaluator = val_evaluator
