"""The mutation score `make mutation` commits: mutmut's verdicts per module, the survivors judged equivalent, totals.

mutmut keeps each mutated module's verdicts in mutants/<module>.meta (JSON: mutant name -> the exit code of its tests).
A mutant the tests fail on, or that never ends (an endless loop the tests' time limit catches), is killed. A survivor
listed in tests/mutation/equivalent.toml, with why no test can tell it from the code, counts apart; every other
survivor is a missing assertion. `mutmut show NAME` prints a mutant's change.
"""

from __future__ import annotations

import json
import sys
import tomllib
from collections import Counter
from pathlib import Path

EQUIVALENT = Path("tests/mutation/equivalent.toml")
RESULTS = Path("tests/mutation/results.md")

# mutmut's exit codes (mutmut/stats.py): the tests failed, or pytest itself did, on the mutant; the mutant ran out
# of its time; the tests passed; no test reaches the mutated function.
_KILLED = {1, 3}
_TIMEOUT = {36, 24, -24, 152, 255}
_SURVIVED = {0}
_NO_TESTS = {5, 33}


def verdict(exit_code: int | None) -> str:
    """killed, timeout, survived, no tests, or not run (skipped, interrupted, crashed: run it again)."""
    for name, codes in (("killed", _KILLED), ("timeout", _TIMEOUT), ("survived", _SURVIVED), ("no tests", _NO_TESTS)):
        if exit_code in codes:
            return name
    return "not run"


def mutated_modules(pyproject: Path = Path("pyproject.toml")) -> list[str]:
    """The modules [tool.mutmut] only_mutate names, in its order."""
    return tomllib.loads(pyproject.read_text())["tool"]["mutmut"]["only_mutate"]


def verdicts(module: str, mutants: Path = Path("mutants")) -> dict[str, str]:
    """Mutant name -> verdict, for one module's last run."""
    meta = mutants / f"{module}.meta"
    if not meta.exists():
        raise SystemExit(f"{meta} is missing: run `make mutation` (mutmut run) first")
    return {name: verdict(code) for name, code in json.loads(meta.read_text())["exit_code_by_key"].items()}


def report(by_module: dict[str, dict[str, str]], equivalent: dict[str, str], seconds: float | None = None) -> str:
    """The results file: a score per module, the equivalent survivors with their reasons, what is left to kill."""
    lines = [
        "# Mutation score",
        "",
        "`make mutation` (mutmut, configured in pyproject.toml's `[tool.mutmut]`) mutates the pure modules and runs",
        "each mutant against the unit tests that reach it; this file is written by `python -m tools.mutation`.",
        "Killed counts mutants the tests fail on and those that never end (caught by the time limit). The score is",
        "killed / mutants run; equivalent survivors (below, with why) are listed, not left out of the count. Survived",
        "includes them; not run counts mutants a stopped run never reached.",
        "",
        "| Module | Mutants | Killed | Timed out | Survived | Equivalent | No tests | Not run | Score |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    totals: Counter = Counter()
    stale = set(equivalent)
    for module, found in by_module.items():
        counts = Counter(found.values())
        survivors = {name for name, v in found.items() if v == "survived"}
        counts["equivalent"] = len(survivors & set(equivalent))
        stale -= survivors
        counts["mutants"] = len(found)
        totals.update(counts)
        lines.append(_row(f"`{module}`", counts))
    lines.append(_row("**Total**", totals))
    lines.append("")
    if seconds is not None:
        lines += [f"The run took {seconds / 60:.0f} minutes.", ""]
    if stale:
        # An equivalent that no longer survives (killed, or renumbered after its function changed) must be re-judged.
        lines += ["Listed as equivalent but not among the survivors: " + ", ".join(f"`{n}`" for n in sorted(stale)), ""]
    lines += ["## Equivalent survivors", "", "| Mutant | Why no test can kill it |", "| --- | --- |"]
    for found in by_module.values():
        for name in sorted(n for n, v in found.items() if v == "survived" and n in equivalent):
            lines.append(f"| `{name}` | {equivalent[name]} |")
    lines.append("")
    for title, kind in (("Survivors still to kill", "survived"), ("Mutants no unit test reaches", "no tests")):
        names = [n for found in by_module.values() for n, v in sorted(found.items()) if v == kind]
        names = [n for n in names if n not in equivalent]
        lines += [f"## {title} ({len(names)})", ""]
        lines += [f"- `{name}`" for name in names] or ["None."]
        lines.append("")
    return "\n".join(lines)


def _row(label: str, counts: Counter) -> str:
    killed, run = counts["killed"] + counts["timeout"], counts["mutants"] - counts["not run"]
    score = f"{100 * killed / run:.1f}%" if run else "-"
    cells = [counts[k] for k in ("mutants", "killed", "timeout", "survived", "equivalent", "no tests", "not run")]
    return f"| {label} | " + " | ".join(map(str, cells)) + f" | {score} |"


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else None
    equivalent = tomllib.loads(EQUIVALENT.read_text()) if EQUIVALENT.exists() else {}
    text = report({module: verdicts(module) for module in mutated_modules()}, equivalent, seconds)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(text.split("\n## ")[0])


if __name__ == "__main__":
    main()
