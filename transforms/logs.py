"""Logging for people: quiet by default, --log_level to see Beam's and TensorFlow's own logs."""

import logging

# Beam logs this on every model load because an optional import beside `resource` fails; memory is
# not what this pipeline reports, so the line is noise.
_KNOWN_NOISE = ("Resource module is not available for current platform",)


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
