"""Use cases over a RegistryReader; they return frozen results and never print."""
