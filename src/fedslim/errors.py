"""Errors every layer may raise, kept at the bottom so no layer imports upward for them."""


class ConfigError(ValueError):
    """A configuration key holds a value fedslim cannot run with (the message names it)."""
