"""The one error a bad config value raises, shared by everything that checks a value where it enters."""


class ConfigError(ValueError):
    """A bad config value; the message names the key and what is allowed."""
