"""One module per command: parse, one ops call, render."""
