"""The error path every command shares: a user's mistake is one line and exit code 2."""
from __future__ import annotations

import os
import sys

import artifacts


def run_cli(action) -> int:
    """Run a CLI action; a ValueError (anything a user can cause) prints its message, exit 2;
    Ctrl-C says what a rerun does, exit 130 (as a shell reports SIGINT); output piped into a
    reader that stops early (`| head`) ends quietly, exit 141 (as a shell reports SIGPIPE). The
    HDF5 write hooks are installed here, at the command's entry (`artifacts.install_hooks`). After
    a failed HDF5 write the process exits at once with 2 (`artifacts.hdf5_left_open`: HDF5 would crash closing
    the file again at exit)."""
    artifacts.install_hooks()
    left_open = len(artifacts.hdf5_left_open())
    try:
        action()
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        if len(artifacts.hdf5_left_open()) > left_open:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(2)
        return 2
    except KeyboardInterrupt:
        print("interrupted: nothing unfinished was marked complete; rerun the command to go on",
              file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush at exit
        return 141
    return 0
