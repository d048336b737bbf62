"""The `semantic_scale` evaluate module: load this directory with `evaluate.load`, do not import it for the math.

`semantic_scale.py` follows the layout `evaluate.load(<directory>)` expects (`<directory>/<directory name>.py`); the
metric card is `README.md`. This file only makes the directory a regular package, so that the class can also be
imported as `semscale_hf.metrics.semantic_scale.semantic_scale.SemanticScale`.
"""
