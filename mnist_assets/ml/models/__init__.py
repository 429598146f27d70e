"""Models and how they learn: the architectures, training loops, recipes, checkpoints, cross-validation,
fine-tuning, augmentation, CLIP and its zero-shot predictions. Plain PyTorch: imports `core` and `data`."""
