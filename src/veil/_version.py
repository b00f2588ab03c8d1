"""veil's version, in a module of its own so that every layer (the native core too) can read it."""

__version__ = "0.1.0"
