"""regtool: look after a private container registry's storage, in both layouts."""

__version__ = "0.1.0"
