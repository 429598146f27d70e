"""Errors of the plain ML code about its inputs, in neutral words: the asset layer
(`assets/common.materialize_first`) adds which asset makes the missing input."""


class MissingInputError(ValueError):
    """An input (a checkpoint, a sample field, an image at the declared shape) is missing or unusable."""
