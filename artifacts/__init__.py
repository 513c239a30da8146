"""Outputs that know what made them: opening, fingerprinting and claiming every stage's files.

    provenance  what determines an output, compared when a stage meets one (reused, refused, --force)
    files       atomic text and figure writes, the one error for a failed write, input identities
    hdf5        the one way stores are opened and written, their arrays' checksum, install_hooks
    locks       claim: a lock beside an output while it is made (exclusive) or read (shared)
    cells       strings from the data as CSV cells a spreadsheet shows as text, Markdown cells
Every stage reaches them as `artifacts.<name>`.
"""
from .cells import csv_text, markdown_cell, plain, spreadsheet_frame, spreadsheet_text, write_csv
from .files import (
                    check_space,
                    file_identity,
                    file_sha256,
                    remove,
                    replace_directory,
                    replaced,
                    same_file,
                    save_figure,
                    set_aside,
                    temp_beside,
                    writable,
                    write_failed,
                    write_text,
)
from .hdf5 import (
                    FORCE_HINT,
                    STAMP_ATTRS,
                    arrays_digest,
                    check_arrays,
                    datasets,
                    hdf5_left_open,
                    install_hooks,
                    io_error,
                    open_h5,
                    read_arrays,
                    stamp,
                    stamp_arrays,
                    verify_complete,
                    write_arrays,
                    written,
)
from .locks import claim
from .provenance import changes, fingerprint, must_make, record, recorded, stale_message, status, versions

__all__ = ["FORCE_HINT", "STAMP_ATTRS", "arrays_digest", "changes", "check_arrays", "check_space", "claim",
           "csv_text",
           "datasets", "file_identity",
           "file_sha256", "fingerprint", "hdf5_left_open", "install_hooks", "io_error",
           "markdown_cell", "must_make", "open_h5", "plain",
           "read_arrays", "record", "recorded", "remove", "replace_directory", "replaced", "same_file",
           "save_figure", "set_aside", "spreadsheet_frame", "spreadsheet_text",
           "stale_message",
           "stamp", "stamp_arrays", "status", "temp_beside", "verify_complete", "versions", "writable",
           "write_arrays",
           "write_csv", "write_failed", "write_text", "written"]
