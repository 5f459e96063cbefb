"""Shared building blocks of medfed: configuration, errors, data, models and metrics.

`common` never imports `client` or `server`; both of those import it.
"""
