"""Pure data: digests, media types, references, manifests and image configs. No I/O."""
