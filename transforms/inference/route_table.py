"""The route table of a routed job: which model serves each route, read from a model root or a JSON or CSV file.

A model root is what users of per-tenant models already have: one directory per route, each a SavedModel or a
base of numbered versions (`gs://b/models/<route>/<version>/saved_model.pb`); a new tenant is a new directory.
The whole root is listed in one recursive listing (Cloud Storage pages it), not a call per route, so 1,000 routes
cost a few list calls. A file maps routes to models living anywhere: a JSON object `{"route": "model dir", ...}`,
or a CSV file with the header `route,model`. A relative model path in a file is relative to the file's folder.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping

from apache_beam.io.filesystems import FileSystems

from transforms.config import ParameterError

SAVED_MODEL_PROTO = "saved_model.pb"
CSV_HEADER = ("route", "model")


def _listed(pattern: str) -> list[str]:
    return [metadata.path for metadata in FileSystems.match([pattern])[0].metadata_list]


def routes_under_root(root: str) -> dict[str, str]:
    """Route -> model directory for each subdirectory of `root` holding a model: ROOT/ROUTE/saved_model.pb (a
    SavedModel) or ROOT/ROUTE/<number>/saved_model.pb (a base of numbered versions)."""
    root = root.rstrip("/")
    routes = {}
    for path in _listed(FileSystems.join(root, "**")):
        parts = path[len(root) + 1 :].split("/")
        if parts[-1] != SAVED_MODEL_PROTO or not parts[0]:
            continue
        if len(parts) == 2 or (len(parts) == 3 and parts[1].isdigit()):
            routes[parts[0]] = FileSystems.join(root, parts[0])
    return routes


def _read_text(uri: str) -> str:
    try:
        with FileSystems.open(uri) as f:
            data = f.read()
    except Exception as error:  # FileSystems raises BeamIOError, IOError or a client error by scheme
        raise ParameterError(f"route table {uri} cannot be read ({type(error).__name__}: {error})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ParameterError(f"route table {uri} is not UTF-8 text ({error.reason} at byte {error.start})") from None


def _model_path(table: str, model: str) -> str:
    if model.startswith("gs://") or model.startswith("/"):
        return model.rstrip("/")
    if "://" in model:
        raise ParameterError(f"route table {table}: model {model!r} is neither a local path nor a gs:// URI")
    return FileSystems.join(table.rsplit("/", 1)[0], model).rstrip("/")


def routes_in_json(table: str, text: str) -> dict[str, str]:
    """A JSON object of route -> model directory."""
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as error:
        raise ParameterError(f"route table {table} is not valid JSON: {error}") from None
    if not isinstance(entries, dict):
        raise ParameterError(
            f'route table {table} is JSON but not an object of route -> model ({{"eu": "gs://b/models/eu"}}); '
            f"got {type(entries).__name__}"
        )
    bad = [route for route, model in entries.items() if not route or not isinstance(model, str) or not model]
    if bad:
        raise ParameterError(
            f"route table {table}: route {bad[0]!r} maps to {entries[bad[0]]!r}; expected a non-empty route and "
            "its model directory as text"
        )
    return {route: _model_path(table, model) for route, model in entries.items()}


def routes_in_csv(table: str, text: str) -> dict[str, str]:
    """A CSV file with the header `route,model`, a route per row, each route once."""
    try:
        rows = list(csv.reader(io.StringIO(text), strict=True))
    except csv.Error as error:
        raise ParameterError(f"route table {table} is not valid CSV: {error}") from None
    if not rows or tuple(rows[0]) != CSV_HEADER:
        found = ",".join(rows[0]) if rows else "nothing"
        raise ParameterError(f"route table {table} must start with the header route,model; found {found}")
    routes = {}
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != 2 or not row[0] or not row[1]:
            raise ParameterError(f"route table {table}, line {line}: expected route,model; got {','.join(row)}")
        if row[0] in routes:
            raise ParameterError(f"route table {table}, line {line}: route {row[0]!r} is listed twice")
        routes[row[0]] = _model_path(table, row[1])
    return routes


def read_route_table(table: str) -> dict[str, str]:
    """Route -> model directory (a SavedModel or a base of numbered versions), from a .json or .csv file or a
    model root; raises ParameterError naming the table and what is wrong with it."""
    if table.endswith(".json"):
        routes = routes_in_json(table, _read_text(table))
    elif table.endswith(".csv"):
        routes = routes_in_csv(table, _read_text(table))
    else:
        try:
            routes = routes_under_root(table)
        except Exception as error:
            raise ParameterError(f"route table {table} cannot be listed ({type(error).__name__}: {error})") from None
    if not routes:
        raise ParameterError(
            f"route table {table} lists no routes: expected a directory whose subdirectories are models "
            f"({table}/ROUTE/VERSION/saved_model.pb or {table}/ROUTE/saved_model.pb), or a .json or .csv file "
            "mapping route to model"
        )
    return dict(sorted(routes.items()))


def route_text(value: object) -> str | None:
    """A route field's value as the route it names: text as it is, a whole number without a decimal point.

    CSV numbers are read as floats unless typed: a device id of 7 is route "7", not "7.0".
    """
    if value is None or value == "":
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        raise ValueError(f"has {len(value)} values; a route is one value")
    return str(value)


def table_routes(routes: Mapping[str, object]) -> str:
    """The routes of a table as an error message shows them: the first few, and how many."""
    names = list(routes)
    shown = ", ".join(names[:5]) + (f", ... ({len(names)} routes)" if len(names) > 5 else "")
    return shown or "none"
