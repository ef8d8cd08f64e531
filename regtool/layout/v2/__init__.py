"""CNCF distribution (registry:2) storage layout."""
