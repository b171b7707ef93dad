"""Write the Flex Template's metadata.json and its spec, the document `gcloud dataflow flex-template build` writes.

python -m tools.template metadata metadata.json
python -m tools.template spec build/template-spec.json --image REGION-docker.pkg.dev/PROJECT/REPO/IMAGE:TAG
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from transforms.parameters import template_metadata


def metadata_json() -> str:
    return json.dumps(template_metadata(), indent=2) + "\n"


def template_spec(image: str, metadata: dict) -> dict:
    """The spec that `gcloud dataflow flex-template run --template-file-gcs-location` reads.

    The same image is the launcher and the workers' SDK container, so what the launcher checked
    is what the workers run, and nothing is pip-installed at launch or on workers.
    """
    return {
        "image": image,
        "sdkInfo": {"language": "PYTHON"},
        "metadata": metadata,
        "defaultEnvironment": {"sdkContainerImage": image},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.template", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    metadata = commands.add_parser("metadata", help="write metadata.json from the parameter registry")
    metadata.add_argument("path", nargs="?", default="metadata.json")
    spec = commands.add_parser("spec", help="write the Flex Template spec JSON for an image")
    spec.add_argument("path")
    spec.add_argument("--image", required=True, help="the template image, as pushed to Artifact Registry")
    args = parser.parse_args(argv)
    if args.command == "metadata":
        Path(args.path).write_text(metadata_json())
    else:
        Path(args.path).parent.mkdir(parents=True, exist_ok=True)
        Path(args.path).write_text(json.dumps(template_spec(args.image, template_metadata()), indent=2) + "\n")
    print(f"wrote {args.path}")


if __name__ == "__main__":
    main()
