"""Fail when the installed Python packages are not exactly the lock: the image's last build step runs this.

    python -m tools.check_lock requirements.txt --allow tfx-inference-template

Every `name==version` of the lock must be installed at that version, and nothing else may be installed but pip
itself and the `--allow`ed names (the project's own package). Standard library only, so it runs before and
without anything it checks.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable, Mapping
from importlib.metadata import distributions
from pathlib import Path

INSTALLER = "pip"  # pip-compile leaves the installer out of the lock; the base image brings it


def normalized(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions(lock_text: str) -> dict[str, str]:
    """name -> version of every `name==version` pin of a pip-compile lock (hashes and comments ignored)."""
    pins = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", lock_text, re.MULTILINE)
    return {normalized(name): version for name, version in pins}


def installed_versions() -> dict[str, str]:
    """name -> version of every distribution this interpreter sees."""
    return {normalized(dist.metadata["Name"]): dist.version for dist in distributions()}


def lock_differences(locked: Mapping[str, str], installed: Mapping[str, str], allowed: Iterable[str] = ()) -> list[str]:
    """Each way `installed` differs from `locked`, one line each; empty when they are the same set."""
    allowed = {normalized(name) for name in allowed} | {INSTALLER}
    differences = [
        f"{name}=={version} is locked but not installed"
        for name, version in sorted(locked.items())
        if name not in installed
    ]
    differences += [
        f"{name} is {installed[name]}, the lock says {version}"
        for name, version in sorted(locked.items())
        if name in installed and installed[name] != version
    ]
    differences += [
        f"{name}=={version} is installed but not in the lock"
        for name, version in sorted(installed.items())
        if name not in locked and name not in allowed
    ]
    return differences


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.check_lock", description=__doc__.splitlines()[0])
    parser.add_argument("locks", nargs="+", type=Path, help="pip-compile lock files, e.g. requirements.txt")
    parser.add_argument("--allow", action="append", default=[], help="a distribution allowed beyond the lock")
    args = parser.parse_args(argv)
    locked = {}
    for lock in args.locks:
        locked.update(locked_versions(lock.read_text()))
    differences = lock_differences(locked, installed_versions(), args.allow)
    for difference in differences:
        print(f"check_lock: {difference}", file=sys.stderr)
    if differences:
        return 1
    print(f"check_lock: the {len(locked)} locked packages are installed, and nothing else")
    return 0


if __name__ == "__main__":
    sys.exit(main())
