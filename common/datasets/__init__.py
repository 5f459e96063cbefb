"""Datasets: the shared contract, the built-in datasets (`builtin`, with their verified
downloads), the hospital formats (`formats`, read by `loaders`), partitioners and checks."""
