"""Bytes at slash-separated keys. Knows nothing about images, manifests or layouts."""
