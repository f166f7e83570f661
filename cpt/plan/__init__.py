"""The plan of a run, pure: stages, recipes, LR schedules, batching, identity hashes, closing metrics."""
