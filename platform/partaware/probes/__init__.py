"""Probes and metrics of the paper's protocol, as plain torch/numpy functions of arrays and a config.

No Ray here: ``partaware.tune`` wraps these functions for Ray Tune. Modules: ``retrieval`` (exact AP/mAP),
``linear``, ``attentive``, ``knn`` (classification heads), ``segmentation`` (linear 1x1-conv head),
``metrics`` (top-1, confusion-matrix mIoU/mAcc/aAcc), ``splits`` (seeded stratified validation split).
"""
