"""``python -m raftkit`` (and ``torchrun -m raftkit``): the ``raftkit`` command."""

from raftkit.cli import main

if __name__ == "__main__":
    main(prog_name="raftkit")
