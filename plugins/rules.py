"""Built-in rules plugin (being written)."""
