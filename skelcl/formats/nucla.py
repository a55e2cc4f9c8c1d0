"""Reader: nucla (being written)."""
