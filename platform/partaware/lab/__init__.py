"""The pretraining lab: one tiny ViT pretrained by the platform itself under each objective family.

Why: the paper compares off-the-shelf encoders that differ in data, epochs and architecture, so its
explanation (contrastive learning is part-to-whole, masked image modelling part-to-part) cannot be
tested causally from its tables. Here every objective trains the *same* backbone on the *same*
images with the *same* budget, and the results enter the zoo ``lab`` as ``lab/<objective>``.

Modules: ``backbone`` (the shared ViT and token-level forwards), ``augment`` (one augmentation
base), ``objectives`` (one module per method), ``data`` (images + labels from a prepared dataset),
``train`` (the loop: checkpoints, resume, weights with digest), ``zoo`` (encoder specs + weight
resolver), ``ray_tasks`` (each objective as its own Ray task). Only ``ray_tasks`` imports Ray.
"""
