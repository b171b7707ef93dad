"""Write the Flex Template's metadata.json and its spec, the one document the Flex Template service launches from.

python -m tools.template metadata metadata.json
python -m tools.template spec build/template-spec.json --image REGION-docker.pkg.dev/PROJECT/REPO/IMAGE@sha256:DIGEST

The spec is written here and nowhere else (Cloud Build's `template-spec` step runs this, then copies it to
gs://BUCKET/templates/). It names the image by digest only: a tag can be moved to another image, and a worker
that autoscaling adds later would then run code the job graph was not built with.

`gcloud dataflow flex-template build` cannot write it: it has no flag for the workers' SDK container, so its
spec leaves `defaultEnvironment` empty and the workers would start the stock Beam image; and it keeps only the
name, description and parameters of metadata.json, dropping `streaming` and the streaming modes. The `spec`
command needs the standard library only, so it runs in the Cloud SDK image.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

METADATA = Path(__file__).resolve().parent.parent / "metadata.json"
# REGISTRY/PATH@sha256:HEX, as `docker inspect` lists a pushed image's RepoDigests.
IMAGE_BY_DIGEST = re.compile(r"[a-z0-9.-]+(?::[0-9]+)?(?:/[a-z0-9._-]+)+@sha256:[0-9a-f]{64}")


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
    spec.add_argument("--image", required=True, help="the template image by digest (REPOSITORY/IMAGE@sha256:...)")
    spec.add_argument("--metadata", default=str(METADATA), help="the template metadata (default: metadata.json)")
    args = parser.parse_args(argv)
    if args.command == "metadata":
        Path(args.path).write_text(metadata_json())
    else:
        if not IMAGE_BY_DIGEST.fullmatch(args.image):
            parser.error(
                f"--image={args.image} does not name an image by digest (REPOSITORY/IMAGE@sha256: and 64 hex "
                "digits): give the digest the registry returned for the push, not a tag"
            )
        document = template_spec(args.image, json.loads(Path(args.metadata).read_text()))
        Path(args.path).parent.mkdir(parents=True, exist_ok=True)
        Path(args.path).write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {args.path}")


if __name__ == "__main__":
    main()
