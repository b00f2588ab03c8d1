"""Previews of what a recipe does before a run: ``veil inspect`` (one file, before and after) and
``veil run --dry-run`` (which rules fire over a sample)."""
