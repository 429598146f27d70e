"""Judging samples and labels: quality scores, the review order, data issues, duplicates, which
unlabeled images to label next, and the label-cleaning loop's simulated reviewer. Plain NumPy and
scikit-learn: imports `core` and `data`."""
