"""Meta-training learned optimizers (imports tensorflow_datasets lazily)."""
