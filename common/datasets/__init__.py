"""Datasets: the shared contract, built-in datasets, partitioners and hospital loaders."""
