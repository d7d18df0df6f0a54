"""Pipeline stages: thin adapters that run the pure core on Ray (Ray Data, Ray actors, Ray Train)."""
