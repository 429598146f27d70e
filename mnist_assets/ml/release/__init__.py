"""The model a dataset ships: candidates compared and judged, the ONNX export with its card, and the
release folder switched as one unit. Imports `core`, `data`, `models` and `quality`."""
