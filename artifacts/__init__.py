"""Outputs that know what made them: opening, fingerprinting and claiming every stage's files.

    provenance  what determines an output, compared when a stage meets one (reused, refused, --force)
    files       atomic text and figure writes, the one error for a failed write, input identities
    hdf5        the one way stores are opened and written, their arrays' checksum, install_hooks
    locks       claim: an exclusive lock beside an output while it is made
Every stage reaches them as `artifacts.<name>`.
"""
from .files import (
                    check_space,
                    file_identity,
                    file_sha256,
                    remove,
                    replaced,
                    same_file,
                    save_figure,
                    temp_beside,
                    writable,
                    write_failed,
                    write_text,
)
from .hdf5 import (
                    FORCE_HINT,
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

__all__ = ["FORCE_HINT", "arrays_digest", "changes", "check_arrays", "check_space", "claim", "datasets",
           "file_identity",
           "file_sha256", "fingerprint", "hdf5_left_open", "install_hooks", "io_error",
           "must_make", "open_h5",
           "read_arrays", "record", "recorded", "remove", "replaced", "same_file", "save_figure",
           "stale_message",
           "stamp", "stamp_arrays", "status", "temp_beside", "verify_complete", "versions", "writable",
           "write_arrays",
           "write_failed", "write_text", "written"]
