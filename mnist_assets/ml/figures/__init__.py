"""Pictures for people: small matplotlib figures for metadata, and the 2-d projections the App
shows (UMAP, compiled once). Imports `core`, `data` and `store`."""
