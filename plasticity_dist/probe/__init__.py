"""Probes: train a copy of a checkpoint on the held-out probe language and record its validation curve."""
