"""Write the Flex Template's metadata.json and its spec, the one document the Flex Template service launches from.

python -m tools.template metadata metadata.json
python -m tools.template spec build/template-spec.json --image REGION-docker.pkg.dev/PROJECT/REPO/IMAGE:TAG

The spec is written here and nowhere else (Cloud Build's `template-spec` step runs this, then copies it to
gs://BUCKET/templates/). `gcloud dataflow flex-template build` cannot write it: it has no flag for the workers'
SDK container, so its spec leaves `defaultEnvironment` empty and the workers would start the stock Beam image;
and it keeps only the name, description and parameters of metadata.json, dropping `streaming` and the
streaming modes. The `spec` command needs the standard library only, so it runs in the Cloud SDK image.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

METADATA = Path(__file__).resolve().parent.parent / "metadata.json"


def metadata_json() -> str:
    """metadata.json as the parameter registry defines it."""
    from transforms.parameters import template_metadata

    return json.dumps(template_metadata(), indent=2) + "\n"


def template_spec(image: str, metadata: dict) -> dict:
    """The spec that `gcloud dataflow flex-template run --template-file-gcs-location` names.

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
    spec.add_argument("--metadata", default=str(METADATA), help="the template metadata (default: metadata.json)")
    args = parser.parse_args(argv)
    if args.command == "metadata":
        Path(args.path).write_text(metadata_json())
    else:
        if ":" not in args.image.rsplit("/", 1)[-1] and "@" not in args.image:
            parser.error(f"--image={args.image} names no tag or digest; give the exact image Cloud Build pushed")
        document = template_spec(args.image, json.loads(Path(args.metadata).read_text()))
        Path(args.path).parent.mkdir(parents=True, exist_ok=True)
        Path(args.path).write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {args.path}")


if __name__ == "__main__":
    main()
