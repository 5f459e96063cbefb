"""Readers for a hospital's own files, one module per family of formats.

Each reader turns files into a `RawData` (float32 inputs, raw labels, optional explicit split)
and raises `DataError` naming the file (and row/column where it can) for anything unusable.
Label encoding, the stratified split and the final contract checks are shared and live in
`common.datasets.hospital`, so every format is validated the same way. Which reader serves which
``data-format`` is declared in `common.datasets.formats`.
"""
