"""Routing measured: 1,000 routes, 200k records in random route order, at most 50 models per worker process,
against the single-model keyed pattern on the same records.

    python -m benchmarks.routing [--routes=1000] [--records=200000] [--cap=50]

Every route's model is y = K x (tools/route_models.py), the single-model job runs route x1's model, and both run
main.py as a user does, each in a fresh process under benchmarks/peak.py (its time after imports, and the peak
memory of its process tree). Reported: rows/s of each and their ratio (target: routed >= 0.5 of keyed), the
routed job's loads per 1,000 rows, and its peak memory against the cap's budget: the peak of the same routed job
with one route (every record to x1: the grouping by route and the routing itself, one model) plus the cap times
one route model's memory (measured here by loading `cap` of them). On the local runner the grouping holds every
record in memory until the input is read, which a one-model job does not: the one-route job measures that apart.
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import random
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

from benchmarks.peak import measure, status_mb
from tools.route_models import write_route_root

ROOT = Path(__file__).resolve().parent.parent
PRELOAD = ("transforms.pipeline",)


def write_records(path: Path, routes: int, records: int) -> None:
    """`records` CSV rows key,region,x with regions x1..x<routes> drawn uniformly at random."""
    rng = random.Random(29)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["key", "region", "x"])
        for i in range(records):
            writer.writerow([f"k{i}", f"x{rng.randint(1, routes)}", i % 97])


def route_model_mb(root: Path, count: int) -> float:
    """The resident memory one route model takes once loaded, from `count` of them loaded in this process."""
    from transforms.config import Batching, ModelSpec
    from transforms.inference.predict import StagedModelHandler
    from transforms.inference.signatures import serving_signature

    signature = serving_signature(str(root / "x1" / "1"), "serving_default")
    gc.collect()
    before = status_mb("self", "VmRSS")
    held = [
        StagedModelHandler(ModelSpec(str(root / f"x{k}" / "1"), f"x{k}"), signature, Batching()).load_model()
        for k in range(1, count + 1)
    ]
    after = status_mb("self", "VmRSS")
    del held
    return (after - before) / count


def _summary_number(stdout: str, pattern: str) -> int:
    found = re.search(pattern, stdout, re.M)
    if found is None:
        raise RuntimeError(f"the run's summary has no {pattern!r}:\n{stdout}")
    return int(found.group(1))


def _check_rows(output: Path, records: int, route_of: Callable[[dict], str] | None) -> None:
    """Every record a row, and a sample of rows computed by the model they name (y = K x, exactly): the route
    `route_of` gives for the row, or x1's model unrouted."""
    files = output.parent.glob(f"{output.name}-*.jsonl")
    rows = [json.loads(line) for path in files for line in path.read_text().splitlines()]
    if len(rows) != records:
        raise AssertionError(f"{len(rows)} rows for {records} records")
    for row in rows[:: max(1, len(rows) // 1000)]:
        (prediction,) = row["predictions"]
        factor = float(prediction["model"].removeprefix("x")) if route_of else 1.0
        if route_of and prediction["model"] != route_of(row):
            raise AssertionError(f"row of region {row['input']['region']} scored by {prediction['model']}")
        if prediction["outputs"]["y"] != [factor * row["input"]["x"]]:
            raise AssertionError(f"wrong output: {row}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--routes", type=int, default=1000)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--cap", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        root = folder / "models"
        write_route_root(root, {f"x{k}": float(k) for k in range(1, args.routes + 1)})
        per_model = route_model_mb(root, args.cap)
        source = folder / "records.csv"
        write_records(source, args.routes, args.records)
        # The region column is text, read as routing reads it, so that both jobs parse the same features.
        common = [f"--input={source}", "--pattern=keyed", "--progress=off", "--feature_types=region:bytes"]
        single_out, routed_out = folder / "single" / "rows", folder / "routed" / "rows"
        single = measure(
            str(ROOT / "main.py"), *common, f"--model_uris={root}/x1", f"--output={single_out}", preload=PRELOAD
        )
        _check_rows(single_out, args.records, None)
        routing = ["--route_field=region", f"--max_models_per_worker={args.cap}", f"--output={routed_out}"]
        routed = measure(str(ROOT / "main.py"), *common, f"--model_uris={root}", *routing, preload=PRELOAD)
        _check_rows(routed_out, args.records, lambda row: row["input"]["region"])
        one_table = folder / "one-route.csv"
        one_table.write_text(f"route,model\nx1,{root}/x1\n")
        one_route = measure(
            str(ROOT / "main.py"), *common, f"--model_uris={one_table}", "--default_route=x1", *routing, preload=PRELOAD
        )
        _check_rows(routed_out, args.records, lambda row: "x1")
    loads = _summary_number(routed.stdout, r"^  routed models +\d+  served \((\d+) loads")
    evictions = _summary_number(routed.stdout, r"^  routed models +\d+  served \(\d+ loads, (\d+) evictions")
    single_rate, routed_rate = args.records / single.run_seconds, args.records / routed.run_seconds
    budget = one_route.total_peak_mb + args.cap * per_model
    print(f"{args.routes} routes, {args.records} records in random route order, at most {args.cap} models loaded")
    print("job                 seconds    rows/s   peak MB (process tree)")
    print(f"keyed, one model  {single.run_seconds:>9.1f} {single_rate:>9.0f}   {single.total_peak_mb:>7.0f}")
    print(f"routed            {routed.run_seconds:>9.1f} {routed_rate:>9.0f}   {routed.total_peak_mb:>7.0f}")
    one_rate = args.records / one_route.run_seconds
    print(f"routed, one route {one_route.run_seconds:>9.1f} {one_rate:>9.0f}   {one_route.total_peak_mb:>7.0f}")
    ratio = routed_rate / single_rate
    print(f"routed / keyed rows/s: {ratio:.2f} ({'meets' if ratio >= 0.5 else 'MISSES'} the target of >= 0.5)")
    print(f"loads: {loads} ({1000 * loads / args.records:.2f} per 1k rows), evictions: {evictions}")
    print(
        f"one route model: {per_model:.1f} MB; the cap's budget: {one_route.total_peak_mb:.0f} (one route) + "
        f"{args.cap} x {per_model:.1f} = {budget:.0f} MB; routed peak {routed.total_peak_mb:.0f} MB "
        f"({'within' if routed.total_peak_mb <= budget else 'OVER'} it)"
    )


if __name__ == "__main__":
    main()
