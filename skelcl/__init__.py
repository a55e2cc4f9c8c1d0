"""skelcl: self-supervised skeleton-based action recognition.

Data flows one way: formats (readers) -> store (canonical arrays, splits, cache) -> augment ->
encoder -> contrast -> train -> probe -> cli.
"""

import os

# OpenMP threads that spin while waiting make every torch op 10-100x slower when other programs share
# the cores (measured in bench/throughput.py); a passive wait costs nothing on an idle machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
