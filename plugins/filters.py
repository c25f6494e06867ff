"""Built-in filters plugin (being written)."""
