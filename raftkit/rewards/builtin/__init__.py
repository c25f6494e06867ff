"""The built-in rewards and filters. Each module is a plugin of its own, registered through the ``raftkit``
entry-point group exactly as a third-party package's (pyproject.toml), so ``RAFTKIT_LOAD_PLUGINS`` can
leave any of them out."""
