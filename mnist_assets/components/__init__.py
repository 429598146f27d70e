"""Component types of mnist_assets (`dg list components` shows them)."""

from mnist_assets.components.image_classification import ImageClassificationPipeline

__all__ = ["ImageClassificationPipeline"]
