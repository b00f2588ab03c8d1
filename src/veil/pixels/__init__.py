"""Pixels: which images are at risk of burned-in text, detection (OCR), redaction, and the codecs that decode
and re-encode the images that change. Imported only by runs whose recipe has a ``pixels:`` section."""
