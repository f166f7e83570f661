"""The model: GPT-NeoX spec and build, Hugging Face checkpoints in and export out."""
