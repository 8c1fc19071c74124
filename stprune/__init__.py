"""stprune: training-free spatio-temporal token pruning (STA) for video transformers."""

__version__ = "0.1.0"
