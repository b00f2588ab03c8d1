"""The ``veil`` command: one module per verb; nothing in veil imports this package."""
