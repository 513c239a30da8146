"""TensorFlow, imported once without its page of notices: `from runtime.tf_quiet import tf`.

TensorFlow 2.21 prints C++ notices while it loads (oneDNN, CPU features, absl's "before
InitializeLog"), whatever TF_CPP_MIN_LOG_LEVEL says, and tf-slim's legacy layers raise Python
deprecation warnings at every graph. Here stderr is closed while the library loads, the
`tensorflow` logger shows errors only, and deprecation / user warnings issued from inside
TensorFlow, tf-keras and tf-slim are ignored. An import error still raises, a warning from this
project's own code still shows, and TF_CPP_MIN_LOG_LEVEL=0 in the environment keeps everything.
"""
from __future__ import annotations

import logging
import os
import sys
import warnings

LIBRARIES = r"(tensorflow|tf_keras|tf_slim|keras)(\.|$)"


def _load():
    if "tensorflow" in sys.modules or os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0":
        import tensorflow
        return tensorflow
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    for category in (UserWarning, DeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category, module=LIBRARIES)
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    return tensorflow


tf = _load()
