"""Recipes: YAML files read, validated, resolved through their layers and compiled to a Plan; free-text cleaning;
the pixel rules. The shipped recipes are package data in ``veil/recipes/shipped/``."""
