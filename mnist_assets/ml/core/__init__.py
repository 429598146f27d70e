"""What every other part of `mnist_assets.ml` stands on: errors, atomic files, safe names, the field
names the pipeline writes into FiftyOne, and where the project keeps its state. Imports nothing of the
project."""
