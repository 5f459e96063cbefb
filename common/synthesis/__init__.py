"""Federated differentially private synthetic data (`task = "synthesize"`): the public table
schema, its data-independent encoding, and the conditional GAN both apps build.

Everything here is derived from *public* information only (the schema a consortium declares),
never from a site's rows, so the server and every site build the same encoder and model
without any data leaving a hospital (docs/PRIVACY.md, "Synthetic data").
"""
