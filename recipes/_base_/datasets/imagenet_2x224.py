# ImageNet-1k as image folders (data/imagenet/train, data/imagenet/val), GroCo's 2x224 DINO-style crops.
dataset_type = 'ImageFolder'
data_root = 'data/imagenet'
views = [dict(type='DINOTransform', global_crop_size=224, n_local_views=0, normalize=None)]
train_pipeline = [dict(type='MultiView', views=views), dict(type='PackViews')]
eval_pipeline = [dict(type='EvalView', resize=256, crop_size=224), dict(type='PackViews')]
model = dict(data_preprocessor=dict(
    type='MultiViewDataPreprocessor', mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]))

train_dataloader = dict(
    batch_size=32,  # per GPU; 32 GPUs -> 1024
    num_workers=10,
    persistent_workers=True,
    pin_memory=True,
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type=dataset_type, data_root=data_root + '/train', pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=256,
    num_workers=10,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='KNNEvalDataset',
        bank=dict(type=dataset_type, data_root=data_root + '/train', pipeline=eval_pipeline),
        query=dict(type=dataset_type, data_root=data_root + '/val', pipeline=eval_pipeline)),
)
val_evaluator = dict(type='KNNAccuracy', k=20, temperature=0.07)
test_dataloader = val_dataloader
test_evaluator = val_evaluator
