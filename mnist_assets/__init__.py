"""Dagster assets for the FiftyOne image-classification series on MNIST."""

from mnist_assets.environment import configure_process_environment

# FiftyOne reads its database location when it is first imported, so the
# project's defaults must be in the environment before anything imports it.
configure_process_environment()
