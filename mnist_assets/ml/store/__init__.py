"""The FiftyOne store: datasets and fields, bulk writes, and the leases that keep concurrent
processes from losing each other's writes. Imports `core` and `data`."""
