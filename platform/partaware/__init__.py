"""partaware: how part-aware and how object-aware are pretrained vision encoders."""

__version__ = "0.1.0"
