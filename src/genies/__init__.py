"""genies: measure how reward models generalize across distribution shifts."""

__version__ = "0.1.0"
