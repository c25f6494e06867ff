"""Built-in neural plugin (being written)."""
