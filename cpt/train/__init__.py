"""Training one stage: the Lightning Trainer and module, the loss, callbacks, crash-safe resume."""
