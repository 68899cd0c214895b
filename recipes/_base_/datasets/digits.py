# The embedded data: scikit-learn digits on a 32x32 noisy canvas (rankssl.mm.digits).
# Train 1,437 / test 360 images, 1 channel; kNN bank = train split, queries = test split.
dataset_type = 'DigitsCanvas'
view = dict(
    type='SimCLRViewTransform', input_size=32, min_scale=0.25, cj_prob=0.8, cj_strength=0.5,
    cj_bright=0.8, cj_contrast=0.8, cj_sat=0.0, cj_hue=0.0, random_gray_scale=0.0,
    gaussian_blur=0.0, hf_prob=0.0, normalize=None)
train_pipeline = [
    dict(type='MultiView', views=[dict(view, num_views=2)]),
    dict(type='PackViews'),
]
eval_pipeline = [dict(type='EvalView'), dict(type='PackViews')]
model = dict(data_preprocessor=dict(type='MultiViewDataPreprocessor', mean=[0.2], std=[0.25]))

train_dataloader = dict(
    batch_size=256,
    num_workers=0,
    persistent_workers=False,  # mmpretrain's tools/train.py defaults it to True, which torch refuses at 0 workers
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type=dataset_type, split='train', pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=512,
    num_workers=0,
    persistent_workers=False,  # mmpretrain's tools/train.py defaults it to True, which torch refuses at 0 workers
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='KNNEvalDataset',
        bank=dict(type=dataset_type, split='train', pipeline=eval_pipeline),
        query=dict(type=dataset_type, split='test', pipeline=eval_pipeline)),
)
val_evaluator = dict(type='KNNAccuracy', k=20, temperature=0.07)  # GroCo's protocol
test_dataloader = val_dataloader
test_evaluator = [
    dict(type='KNNAccuracy', k=20, temperature=0.07),
    dict(type='KNNAccuracy', k=200, temperature=0.1, prefix='knn200'),  # lightly's protocol
    dict(type='LinearProbeAccuracy'),  # linear probe on frozen features
]
