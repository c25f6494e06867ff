"""The run directory: writing it, reading it back, and the views and plots of `raftkit inspect`."""
