"""Legacy Python docker-registry 0.x storage layout (images/ + repositories/)."""
