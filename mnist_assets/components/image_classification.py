"""ImageClassificationPipeline: one `defs.yaml` declares a dataset; this builds its whole graph."""

import dagster as dg

from mnist_assets.ml.data.dataset_spec import DatasetSpec


class ImageClassificationPipeline(DatasetSpec, dg.Component, dg.Resolvable):
    """The FiftyOne image-classification pipeline on one dataset: raw data, metadata, CLIP
    embeddings, projections and zero-shot predictions, a LeNet-5 checkpoint, its predictions and
    embeddings, quality scores, an augmented set, a fine-tuned model and the comparison, every
    asset under the key prefix `<name>/`, partitioned per split where it applies.

    Attributes are those of `mnist_assets.ml.data.dataset_spec.DatasetSpec`: `name` and `source`
    (`mnist`, `fashion-mnist` or `folder`) are required, `path` too for a folder; `image_size`,
    `channels`, `class_names`, `validation_fraction`, `test_fraction`, `split_seed`,
    `horizontal_flip`, `clip_class_names`, `clip_templates`, `label_errors`, `epochs`,
    `checkpoint_epochs`, `batch_augmentation`, `cnn_arch`, `cnn_epochs`, `accuracy_gate`, `issue_gates`,
    `outlier_spaces`, `strict`, `keep_releases`, `label_noise`, `label_budget`, `unlabeled`, `label_batch`,
    `pool_labels`, `pool_embedding` and `retrain` are optional.
    """

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        from mnist_assets.pipeline import build_pipeline_defs

        return build_pipeline_defs(DatasetSpec(**self.model_dump()))
