"""On-disk layouts. Only `v1/paths.py` and `v2/paths.py` know where things live."""
