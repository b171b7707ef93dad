"""Logging for people: quiet by default, --log_level to see Beam's and TensorFlow's own logs."""

import logging

# Lines Beam logs on every run that say nothing about this pipeline: the first on every model load
# (an optional import beside `resource` fails), the second from each local worker process, which is
# handed the launcher's DirectRunner-only options.
_KNOWN_NOISE = ("Resource module is not available for current platform", "Discarding unparseable args")


class _DropKnownNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()  # worker logs arrive wrapped, so look inside
        return not any(noise in message for noise in _KNOWN_NOISE)


def configure_logging(level: str) -> None:
    """Python logging at `level`; TensorFlow's deprecation warnings only from INFO down."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    root.setLevel(level)
    for handler in root.handlers:
        handler.addFilter(_DropKnownNoise())
    quiet_level = level if logging.getLevelName(level) <= logging.INFO else "ERROR"
    for name in ("tensorflow", "absl"):
        logging.getLogger(name).setLevel(quiet_level)
