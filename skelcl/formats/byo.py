"""Reader: byo (being written)."""
