"""Helpers shared by the commands' argument handling."""

__all__ = ["comma_separated"]


def comma_separated(text):
    """`"a,b,"` -> `["a", "b"]`."""
    return [item for item in text.split(",") if item]
