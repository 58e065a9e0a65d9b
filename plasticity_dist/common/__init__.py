"""Shared plumbing: atomic files, processes, logging, a run's folder layout and its lock."""
