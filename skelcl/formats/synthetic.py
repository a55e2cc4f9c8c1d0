"""Reader: synthetic (being written)."""
