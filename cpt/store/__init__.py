"""What persists: atomic writes, the prefix cache, a stage's periodic checkpoints, MLflow."""
