"""The inference pipeline: parameters, sources, example encoding, inference, post-processing, patterns, sinks."""

import contextlib
import os

# Every process that runs the pipeline imports this package first (the launcher, local workers,
# Dataflow workers), so this is the one place that keeps TensorFlow's C++ start-up noise (CUDA
# probing on CPU machines, oneDNN notes) out of their logs. Set TF_CPP_MIN_LOG_LEVEL=0 to see it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@contextlib.contextmanager
def _stderr_silenced():
    """Point file descriptor 2 at /dev/null: TensorFlow's absl logging writes there before it reads any setting."""
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


if os.environ["TF_CPP_MIN_LOG_LEVEL"] >= "2":
    with _stderr_silenced():
        import tensorflow  # noqa: F401  (imported here only to keep its import-time banner quiet)

    import logging

    # tfx-bsl loads models with TensorFlow's TF1 loader, which logs a deprecation warning on every load
    # in every worker; --log_level=INFO turns the tensorflow logger back on in the launcher.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
