"""skelcl: self-supervised skeleton-based action recognition.

Data flows one way: formats (readers) -> store (canonical arrays, splits, cache) -> augment ->
encoder -> contrast -> train -> probe -> cli.
"""

__version__ = "0.1.0"
