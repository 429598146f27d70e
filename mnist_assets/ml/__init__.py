"""The plain ML code, free of Dagster: the assets (`mnist_assets/assets/`) call it, and so can anyone.

Its parts, each a package by job, and what each may import (tests/test_style.py holds them to it):

    core       errors, atomic files, safe names, field names, where state lives    nothing
    data       declarations, sources, image conversion, label noise, tensors      core
    store      the FiftyOne store, bulk writes, leases                             core, data
    decisions  a person's label decisions: the log, files, the App, applying them core, data, store
    ingest     one split of a source into the store, the decisions applied         core, data, store, decisions
    models     architectures, training, recipes, checkpoints, CLIP, zero-shot      core, data
    quality    quality scores, review order, data issues, duplicates, label requests  core, data
    figures    small figures for metadata, the App's 2-d projections               core, data, store
    release    candidates judged, the ONNX export, the release folder              core, data, models, quality

A module the code location (mnist_assets/definitions.py) loads imports torch, FiftyOne,
scikit-learn and matplotlib inside the functions that use them, so the location loads without them
(tests/test_style.py); the default executor's forkserver imports this whole package once per run
(mnist_assets/executors.py). Imports of the project's own modules inside functions are for that
alone.
"""
