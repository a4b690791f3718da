"""The keras_lopt version, written into every exported preset."""

__version__ = "0.1.0"
