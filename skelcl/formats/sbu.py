"""Reader: sbu (being written)."""
