"""The gridloop service: config, strategies, CLI and the wiring of actors."""
