"""The DeepSpeed engine and what runs on it: launch, steps, validation, checkpoints."""
