"""Reader: ntu (being written)."""
