"""Scratch (2026-12-05, fourteenth session): on `PYTHONPATH` (renamed
`sitecustomize.py` in a directory of its own) with `PLAIN_GRAPH_UPDATE=1`,
every process traces the batched step into the train step's graph instead of
compiling it (`compiled_update.in_xla_program` patched to return True), as
`plain_graph_update.txt` was measured."""

import os

if os.environ.get("PLAIN_GRAPH_UPDATE") == "1":
    import keras_lopt.compiled_update as _cu

    _cu.in_xla_program = lambda: True
