"""Print docs/configuration.md's option tables (the same as ``python -m raftkit.cli.docgen``, which also
writes them into the file with --write and checks them with --check).
"""

import sys

from raftkit.cli.docgen import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
