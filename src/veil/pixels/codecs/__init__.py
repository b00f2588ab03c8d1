"""Pixel codecs: decoding compressed pixel data and writing redacted pixels in the recipe's ``pixels.output``,
one backend per module behind :mod:`veil.pixels.codecs.base` (as pydicom's ``pixels/decoders/``)."""
