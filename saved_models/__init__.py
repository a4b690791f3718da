"""Shipped learned-optimizer presets (installed as keras_lopt.saved_models)."""
