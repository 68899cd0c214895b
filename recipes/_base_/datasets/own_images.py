# One's own unlabelled images: every image file under data_root, sub-folders included, any format
# PIL opens (rankssl.mm.own_images.UnlabelledImages), as RGB. Point it at your folder with
#   rankssl train RECIPE --data-root /path/to/my_images
# No labels, so no kNN validation: the run trains and saves checkpoints, loss.png shows progress.
# SimCLR-style views at 64x64 (random resized crop, flip, colour jitter, grey, blur).
dataset_type = 'UnlabelledImages'
data_root = 'data/my_images'
input_size = 64
view = dict(type='SimCLRViewTransform', input_size=input_size, min_scale=0.2, normalize=None)
train_pipeline = [dict(type='MultiView', views=[dict(view, num_views=2)]), dict(type='PackViews')]
# ImageNet's pixel statistics: a fair default for photographs
model = dict(data_preprocessor=dict(
    type='MultiViewDataPreprocessor', mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]))

train_dataloader = dict(
    batch_size=64,  # the folder needs at least this many images (drop_last)
    num_workers=2,
    persistent_workers=True,
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type=dataset_type, data_root=data_root, pipeline=train_pipeline),
)
val_dataloader = None
val_evaluator = None
test_dataloader = None
test_evaluator = None
