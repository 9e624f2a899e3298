"""A Frequenz Microgrid API (v1alpha18) server with simulated physics."""
