"""Flex Template entrypoint: ML inference with TFX RunInference, one pattern per launch."""

import sys

from transforms.config import ParameterError
from transforms.logs import configure_logging
from transforms.pipeline import parse_arguments, run


def main(argv: list[str]) -> int:
    try:
        config, options, log_level = parse_arguments(argv)
        configure_logging(log_level)
        return run(config, options)
    except ParameterError as error:
        print(f"main.py: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
