"""The run's typed schema and its validation, and the short forms of `shift=files`."""
