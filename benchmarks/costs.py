"""The cost of a million predictions on Dataflow, from a variant's measured CPU-seconds per record.

Prices: Apache Beam's own cost benchmark constants (`apache_beam/testing/load_tests/dataflow_cost_consts.py` of
the pinned Beam, "Dataflow costs for running jobs in us-central1", from https://cloud.google.com/dataflow/pricing):
a batch worker's vCPU-hour, GB-hour of memory and GB-hour of standard Persistent Disk, on demand. The worker:
n1-standard-2, 2 vCPUs and 7.5 GB (N1 standard machines have 3.75 GB per vCPU,
https://cloud.google.com/compute/docs/general-purpose-machines#n1_machines), with the 25 GB boot disk a batch job
gets by default, as batch jobs use Dataflow Shuffle by default (https://cloud.google.com/dataflow/docs/shuffle-for-batch,
updated 2025-09-04). The worker is taken as busy on both vCPUs all the time it is billed: start-up, idle time and
shuffle (which `postprocess` and the others do not do) are left out, so these are floors of what a job costs.
"""

from __future__ import annotations

from apache_beam.testing.load_tests import dataflow_cost_consts as prices

WORKER = "n1-standard-2"
WORKER_VCPUS = 2
WORKER_MEMORY_GB = 7.5
WORKER_DISK_GB = 25
PRICES_SOURCE = (
    "apache_beam/testing/load_tests/dataflow_cost_consts.py (Beam 2.77.0): us-central1, "
    "from https://cloud.google.com/dataflow/pricing"
)


def worker_hour() -> float:
    """US dollars an hour of one batch worker costs: its vCPUs, its memory and its boot disk."""
    return (
        WORKER_VCPUS * prices.VCPU_PER_HR_BATCH
        + WORKER_MEMORY_GB * prices.MEM_PER_GB_HR_BATCH
        + WORKER_DISK_GB * prices.PD_PER_GB_HR
    )


def per_million(records_per_cpu_second: float) -> float:
    """US dollars for a million predictions at this rate per CPU-second, each vCPU of the worker busy."""
    worker_records_per_hour = records_per_cpu_second * WORKER_VCPUS * 3600
    return worker_hour() * 1_000_000 / worker_records_per_hour


def markdown(results: dict) -> str:
    """The cost table of every variant with a steady CPU rate, in the results' order, but the code before issue 15."""
    lines = [
        f"Cost per million predictions on Dataflow (batch, on demand), each variant's steady records per CPU-second "
        f"on a {WORKER} worker ({WORKER_VCPUS} vCPUs, {WORKER_MEMORY_GB:g} GB, {WORKER_DISK_GB} GB boot disk) at "
        f"${worker_hour():.4f} an hour: ${prices.VCPU_PER_HR_BATCH} a vCPU-hour, ${prices.MEM_PER_GB_HR_BATCH} a "
        f"GB-hour, ${prices.PD_PER_GB_HR} a disk GB-hour ({PRICES_SOURCE}; see benchmarks/README.md). A floor: the "
        "worker is taken as busy on both vCPUs for every second billed.",
        "",
        "| variant | records per CPU-s | CPU-s per 1M | $ per 1M predictions | $ per 1B predictions |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, result in results.items():
        rate = result["steady_cpu_rate"]["median"]
        if rate and "before issue 15" not in name:
            cost = per_million(rate)
            lines.append(f"| {name} | {rate:,.0f} | {1_000_000 / rate:,.1f} | {cost:.5f} | {1000 * cost:,.2f} |")
    return "\n".join(lines)
