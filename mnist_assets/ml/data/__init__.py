"""Datasets as declared and read: the declaration (`dataset_spec`), the sources (MNIST's IDX files,
image folders), image conversion, declared label noise and budgets, and the tensors training reads.
Imports `core` only."""
