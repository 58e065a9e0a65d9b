"""plasticity-dist: measure loss of plasticity in GPT-style language models at cluster scale."""

__version__ = "0.1.0"
