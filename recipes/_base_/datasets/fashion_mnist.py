# Fashion-MNIST (Xiao et al. 2017): 60,000 train / 10,000 test grey 28x28 images, 10 classes, read
# from the IDX files under data_root (rankssl.mm.fashion_mnist.FashionMNIST; never downloaded).
# `apt-get install dataset-fashion-mnist` puts them in /usr/share/datasets/fashion-mnist:
#   rankssl train RECIPE --data-root /usr/share/datasets/fashion-mnist
# The views are the digits canvas's (recipes/_base_/datasets/digits.py) at 28x28, plus horizontal
# flips (clothes are left-right symmetric, digits are not). kNN bank = the train split, queries = test.
dataset_type = 'FashionMNIST'
data_root = 'data/fashion-mnist'
view = dict(
    type='SimCLRViewTransform', input_size=28, min_scale=0.25, cj_prob=0.8, cj_strength=0.5,
    cj_bright=0.8, cj_contrast=0.8, cj_sat=0.0, cj_hue=0.0, random_gray_scale=0.0,
    gaussian_blur=0.0, hf_prob=0.5, normalize=None)
train_pipeline = [
    dict(type='MultiView', views=[dict(view, num_views=2)]),
    dict(type='PackViews'),
]
eval_pipeline = [dict(type='EvalView'), dict(type='PackViews')]
# Fashion-MNIST's pixel mean and standard deviation (train split)
model = dict(data_preprocessor=dict(type='MultiViewDataPreprocessor', mean=[0.286], std=[0.353]))

train_dataloader = dict(
    batch_size=256,
    num_workers=0,
    persistent_workers=False,  # mmpretrain's tools/train.py defaults it to True, which torch refuses at 0 workers
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type=dataset_type, data_root=data_root, split='train', pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=512,
    num_workers=0,
    persistent_workers=False,  # mmpretrain's tools/train.py defaults it to True, which torch refuses at 0 workers
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='KNNEvalDataset',
        bank=dict(type=dataset_type, data_root=data_root, split='train', pipeline=eval_pipeline),
        query=dict(type=dataset_type, data_root=data_root, split='test', pipeline=eval_pipeline)),
)
val_evaluator = dict(type='KNNAccuracy', k=20, temperature=0.07)  # GroCo's protocol
test_dataloader = val_dataloader
test_evaluator = [
    dict(type='KNNAccuracy', k=20, temperature=0.07),
    dict(type='KNNAccuracy', k=200, temperature=0.1, prefix='knn200'),  # lightly's protocol
    dict(type='LinearProbeAccuracy'),  # linear probe on frozen features
]
