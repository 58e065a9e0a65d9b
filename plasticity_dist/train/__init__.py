"""The continual-learning training loop, its metrics and its callbacks."""
