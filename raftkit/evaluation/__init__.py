"""Held-out evaluation: what a model does on prompts it never trained on, beside its rewards.

- ``metrics``: sample the held-out prompts and measure them (answer accuracy, degeneracy, distinct-2,
  length, each reward), compare two evaluations and raise the alarm;
- ``run``: `raftkit eval` and ``raftkit.eval``: a model folder or a run's model beside its base model;
- ``render``: the evaluation as a person reads it.
"""
