"""Dagster assets for the FiftyOne image-classification series, on any image-classification dataset.

Importing the package changes nothing outside it: FiftyOne is pointed at the project's database
when a process first connects (`mnist_assets.ml.store.fiftyone_store.connect`).
"""
