"""Terraform provider schemas, offline: read from the jsii assembly of a CDK Terrain provider wheel, and used
to check every resource type, argument and block name of a Terraform configuration, and every attribute it
reads from a resource or data source (what `terraform validate` would do if providers could be downloaded).

    python -m tools.provider_schema extract WHEEL... --out .tools/provider-schema
    python -m tools.provider_schema check terraform/ --schemas .tools/provider-schema
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
import tarfile
import zipfile
from pathlib import Path

import hcl2

_REPRESENTS = re.compile(
    r"Represents a \{@link https://registry\.terraform\.io/providers/hashicorp/(?P<provider>[\w-]+)/(?P<version>[\d.]+)"
    r"/docs/(?P<kind>resources|data-sources)/\w+ (?P<type>\w+)\}"
)
_ATTRIBUTE = re.compile(r"registry\.terraform\.io/providers/\S+/docs/[\w-]+/\w+#(\w+) ")
# Terraform's own meta-arguments and blocks, valid in every resource and data block.
META_ARGUMENTS = {"count", "for_each", "depends_on", "provider", "lifecycle", "provisioner", "connection"}
# `google_x.name.attribute` or `data.google_x.name[key].attribute`, wherever an expression reads one.
_ATTRIBUTE_REFERENCE = re.compile(r"\b(data\.)?(google(?:_[a-z0-9]+)+)\.([\w-]+)(?:\[[^\]]*\])?\.(\w+)")


def _nested_fqn(type_ref: dict) -> str | None:
    if "fqn" in type_ref:
        return type_ref["fqn"]
    if "collection" in type_ref:
        return _nested_fqn(type_ref["collection"]["elementtype"])
    for member in type_ref.get("union", {}).get("types", []):
        found = _nested_fqn(member)
        if found and not found.startswith("cdktn."):
            return found
    return None


def _block(types: dict, fqn: str, seen: frozenset = frozenset()) -> dict:
    arguments, blocks = {}, {}
    for prop in types[fqn].get("properties", []):
        docs = prop.get("docs", {})
        match = _ATTRIBUTE.search(docs.get("remarks", "") + " " + docs.get("summary", ""))
        if not match:
            continue
        name = match.group(1)
        nested = _nested_fqn(prop["type"])
        if nested in types and types[nested].get("datatype") and nested not in seen:
            blocks[name] = _block(types, nested, seen | {fqn})
        else:
            arguments[name] = {"required": not prop.get("optional", False)}
    return {"arguments": arguments, "blocks": blocks}


def _attributes(spec: dict) -> list[str]:
    """What a resource or data source exports (arguments and computed attributes): its class's instance
    properties, camelCase in the assembly, minus the `...Input` twins of the arguments."""
    names = (p["name"] for p in spec.get("properties", []) if not p.get("static"))
    return sorted(re.sub(r"(?<!^)(?=[A-Z])", "_", n).lower() for n in names if not n.endswith("Input"))


def schemas_from_assembly(assembly: dict) -> dict:
    """{"provider": ..., "version": ..., "resource": {type: block}, "data": {type: block}} of one provider;
    each top-level block also lists its "attributes"."""
    types = assembly["types"]
    result = {"resource": {}, "data": {}}
    for fqn, spec in types.items():
        match = _REPRESENTS.search(spec.get("docs", {}).get("summary", ""))
        if spec.get("kind") != "class" or not match or f"{fqn}Config" not in types:
            continue
        kind = "resource" if match["kind"] == "resources" else "data"
        result[kind][match["type"]] = {**_block(types, f"{fqn}Config"), "attributes": _attributes(spec)}
        result["provider"], result["version"] = match["provider"], match["version"]
    return result


def assembly_from_wheel(wheel: Path) -> dict:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".jsii.tgz"))
        with tarfile.open(fileobj=io.BytesIO(archive.read(name))) as tar:
            return json.load(tar.extractfile("package/.jsii"))


def _label(text: str) -> str:
    return text.strip('"')


def _check_block(body: dict, schema: dict, where: str, top_level: bool = False) -> list[str]:
    problems = []
    for name, value in body.items():
        if name.startswith("__"):  # python-hcl2's own markers: __is_block__, __comments__, ...
            continue
        if name == "dynamic":
            for dynamic in value:
                for label, spec in dynamic.items():
                    block_name = _label(label)
                    if block_name not in schema["blocks"]:
                        problems.append(f"{where}: no block {block_name!r} (dynamic)")
                        continue
                    for content in spec.get("content", []):
                        problems += _check_block(content, schema["blocks"][block_name], f"{where}.{block_name}")
            continue
        is_block = isinstance(value, list) and value and isinstance(value[0], dict) and value[0].get("__is_block__")
        if is_block and name in schema["blocks"]:
            for item in value:
                problems += _check_block(item, schema["blocks"][name], f"{where}.{name}")
        elif not ((name in schema["arguments"] and not is_block) or (top_level and name in META_ARGUMENTS)):
            kind = "block" if is_block else "argument"
            problems.append(f"{where}: no {kind} {name!r}")
    present = set(body)
    for name, argument in schema["arguments"].items():
        if argument["required"] and name not in present:
            problems.append(f"{where}: required argument {name!r} is missing")
    return problems


def _expressions(value) -> list[str]:
    if isinstance(value, dict):
        return [text for key, item in value.items() if not key.startswith("__") for text in _expressions(item)]
    if isinstance(value, list):
        return [text for item in value for text in _expressions(item)]
    return [str(value)]


def _check_references(path: Path, document: dict, schemas: dict[str, dict]) -> list[str]:
    problems = []
    for expression in _expressions(document):
        for data, resource_type, name, attribute in _ATTRIBUTE_REFERENCE.findall(expression):
            kind = "data" if data else "resource"
            schema = next((s[kind][resource_type] for s in schemas.values() if resource_type in s[kind]), None)
            if schema is not None and attribute not in {*schema["attributes"], *schema["arguments"], *schema["blocks"]}:
                problems.append(f"{path.name}: {data}{resource_type}.{name} has no attribute {attribute!r}")
    return problems


def check_configuration(directory: Path, schemas: dict[str, dict]) -> list[str]:
    """Every unknown resource or data type, argument or block, missing required argument, and attribute read
    that the type does not export, in `directory`."""
    problems = []
    for path in sorted(directory.glob("*.tf")):
        with open(path) as f:
            document = hcl2.load(f)
        for kind in ("resource", "data"):
            for entry in document.get(kind, []):
                for quoted_type, instances in entry.items():
                    resource_type = _label(quoted_type)
                    schema = next((s[kind][resource_type] for s in schemas.values() if resource_type in s[kind]), None)
                    if schema is None:
                        problems.append(f"{path.name}: unknown {kind} type {resource_type!r}")
                        continue
                    for quoted_name, body in instances.items():
                        where = f"{path.name}: {resource_type}.{_label(quoted_name)}"
                        problems += _check_block(body, schema, where, top_level=True)
        problems += _check_references(path, document, schemas)
    return problems


def load_schemas(directory: Path) -> dict[str, dict]:
    schemas = {path.stem: json.loads(path.read_text()) for path in sorted(directory.glob("*.json"))}
    for name, schema in schemas.items():
        if "attributes" not in schema["resource"].get("google_storage_bucket", {}):
            raise ValueError(f"{directory}/{name}.json predates attribute checks: `make provider-schemas` rebuilds it")
    return schemas


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.provider_schema", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    extract = commands.add_parser("extract", help="write one schema JSON per provider wheel")
    extract.add_argument("wheels", nargs="+", type=Path)
    extract.add_argument("--out", type=Path, required=True)
    check = commands.add_parser("check", help="check a Terraform directory against the extracted schemas")
    check.add_argument("directory", type=Path)
    check.add_argument("--schemas", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "extract":
        args.out.mkdir(parents=True, exist_ok=True)
        for wheel in args.wheels:
            schema = schemas_from_assembly(assembly_from_wheel(wheel))
            path = args.out / f"{schema['provider']}.json"
            path.write_text(json.dumps(schema, sort_keys=True))
            print(f"wrote {path}: {schema['provider']} {schema['version']}, {len(schema['resource'])} resources")
        return 0
    problems = check_configuration(args.directory, load_schemas(args.schemas))
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
