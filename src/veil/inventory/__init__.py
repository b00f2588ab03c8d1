"""``veil profile``: an inventory of an archive (modalities, transfer syntaxes, devices, private blocks, the
images at risk of burned-in text)."""
