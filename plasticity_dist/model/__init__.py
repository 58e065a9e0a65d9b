"""The GPT, its size presets and their parameter table."""
