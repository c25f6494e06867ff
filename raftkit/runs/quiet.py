"""A quiet terminal: what other libraries print goes to the run's log file, raftkit's own output stays.

raftkit prints through rich on stdout. vLLM, transformers, torch and Python's warnings write to stderr,
often from C++ (torch's NUMA note, vLLM's per-start warnings), where no Python logging setting reaches. So
for the duration of a run, file descriptor 2 itself points at a log file: everything written there, from
Python or native code, lands in ``RUN_DIR/logs/terminal.log`` instead of the terminal. The descriptor is
restored before raftkit reports an error, so errors always reach the terminal. ``--verbose`` skips all this.

The run directory may not exist yet when the run starts (it is created only after the settings are
validated), so the log is first written to a temporary file and moved into place at the end.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOG_NAME = "terminal.log"
_terminal_fd: int | None = None  # the real stderr while it is redirected


def to_terminal(text: str) -> None:
    """Write to the real terminal's stderr even while fd 2 goes to the log (e.g. a rank's last words
    before ``os._exit``, which skips the redirect's clean-up)."""
    sys.stderr.flush()
    os.write(_terminal_fd if _terminal_fd is not None else 2, text.encode("utf-8", "replace"))


@contextmanager
def foreign_output_to_log(run_dir: Path, enabled: bool = True, python_stderr: bool = False
                          ) -> Iterator[Path | None]:
    """Send stderr (fd 2) to a log file while the block runs; yields the temporary log's path.

    ``python_stderr``: ``sys.stderr`` too, where it is not fd 2 (a notebook, a test's capture): the
    Python API's case, where transformers' progress bars write to whatever ``sys.stderr`` is.
    At the end the log is appended to ``run_dir/logs/terminal.log`` when the run directory exists; when
    it does not (the run failed before creating it), the temporary file is kept and its path printed.
    """
    if not enabled:
        yield None
        return
    sys.stderr.flush()
    global _terminal_fd
    fd, tmp = tempfile.mkstemp(prefix="raftkit-", suffix=".log")
    saved = os.dup(2)
    os.dup2(fd, 2)
    os.close(fd)
    _terminal_fd = saved
    stream = sys.stderr
    if python_stderr:
        sys.stderr = open(2, "w", encoding="utf-8", errors="replace", buffering=1, closefd=False)
    try:
        yield Path(tmp)
    finally:
        sys.stderr.flush()
        if python_stderr:
            sys.stderr.close()
            sys.stderr = stream
        os.dup2(saved, 2)
        os.close(saved)
        _terminal_fd = None
        _keep(Path(tmp), Path(run_dir))


def _keep(tmp: Path, run_dir: Path) -> None:
    if tmp.stat().st_size == 0:
        tmp.unlink(missing_ok=True)
        return
    if not run_dir.is_dir():
        print(f"(other libraries' output of this run: {tmp})", file=sys.stderr)
        return
    logs = run_dir / "logs"
    try:
        logs.mkdir(exist_ok=True)
        with open(logs / LOG_NAME, "ab") as out, open(tmp, "rb") as src:
            shutil.copyfileobj(src, out)  # appended: a resumed run keeps the earlier starts' output
        tmp.unlink(missing_ok=True)
    except OSError as e:  # a full disk must not turn a finished run into an error
        print(f"(could not move {tmp} into {logs}: {e.strerror or e})", file=sys.stderr)
