"""Remote inference demo: the local Vertex AI stand-in serves an endpoint, and main.py calls it as a model, alone,
beside a local model and after one (the post's cascade), exactly as it would call Vertex AI.

    make demo-remote
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from tools.vertex_endpoint import export_instance_model, running

ROOT = Path(__file__).resolve().parent.parent
ENDPOINTS = "projects/demo-project/locations/us-central1/endpoints"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.demo_remote", description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=ROOT / "demo" / "models", help="where make models built them")
    parser.add_argument("--data", type=Path, default=ROOT / "demo" / "data", help="where make data built it")
    parser.add_argument("--output", type=Path, default=ROOT / "out" / "demo-remote")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        times_10 = export_instance_model(f"{folder}/times_10", lambda x: {"y": 10 * x})
        with running([f"{ENDPOINTS}/10=7001:{times_10}"], Path(folder) / "stand_in.log") as address:
            print(f"Vertex AI stand-in on {address}: endpoint 10 serves y = 10x as deployed model 7001")
            runs = {
                "remote": ["--pattern=postprocess", f"--model_uris=vertex://{ENDPOINTS}/10", "numbers.jsonl"],
                "cascade": [
                    "--pattern=multi_sequence",
                    f"--model_uris={args.models / 'multiply_by_5'},vertex://{ENDPOINTS}/10",
                    "numbers.jsonl",
                ],
                "local_and_remote": [
                    "--pattern=multi_parallel",
                    f"--model_uris={args.models / 'multiply_by_5'},vertex://{ENDPOINTS}/10",
                    "numbers.csv",
                ],
            }
            for name, (*arguments, data) in runs.items():
                command = [sys.executable, str(ROOT / "main.py"), *arguments, f"--vertex_api_endpoint={address}"]
                command += [f"--input={args.data / data}", f"--output={args.output / name}"]
                print(f"\n$ main.py {' '.join(arguments)} --input={data}", flush=True)
                if subprocess.run(command, cwd=ROOT).returncode != 0:
                    return 1
    print(f"\nrows and dead letters are under {args.output}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
