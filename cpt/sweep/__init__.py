"""Multiruns: tags a sweeper hands its jobs, the sweep table, the Hydra callback at a sweep's end."""
