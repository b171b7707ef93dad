"""A routed job's launch: the route table read, every route's model resolved and checked, before the pipeline is built.

Each route's model is resolved as --model_uris entries are (its newest complete version) and its signature read,
a few routes at a time in parallel: on Cloud Storage each costs a listing and a read, and a launcher has minutes,
not hours, for 1,000 routes. All routes must take the same input, because the pipeline builds each record's input
once, before it knows which model's batch the record joins: the same kind of signature and, for named tensors,
the same inputs, dtypes and shapes. Outputs may differ (each row names its model and holds that model's outputs).
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from transforms.config import InferenceConfig, ModelSpec, ParameterError
from transforms.inference.model_versions import resolve_model
from transforms.inference.route_table import read_route_table, table_routes
from transforms.inference.signatures import NAMED_TENSORS, Signature, serving_signature
from transforms.reading.sources import InputPlan

# Routes resolved at once at launch: each waits mostly on Cloud Storage.
LAUNCH_THREADS = 16


@dataclass(frozen=True)
class RouteModel:
    """One route's model as resolved at launch (its version directory, version and base) and its signature."""

    spec: ModelSpec
    signature: Signature


@dataclass(frozen=True)
class RoutePlan:
    """The routes a routed job starts with, the signature every route's model must match, and the default route.

    `reference` is the route whose signature the others are compared with: the default route, else the first.
    """

    table: str
    field: str
    routes: Mapping[str, RouteModel]
    reference: str
    default_route: str | None

    @property
    def signature(self) -> Signature:
        return self.routes[self.reference].signature


def _inputs(signature: Signature) -> tuple[tuple, ...]:
    return tuple(sorted((info.alias, info.dtype, info.shape) for info in signature.inputs))


def _shown_input(signature: Signature) -> str:
    if signature.kind != NAMED_TENSORS:
        return f"a {signature.kind} signature"
    shown = ", ".join(f"{alias} ({dtype} {list(shape or ())})" for alias, dtype, shape in _inputs(signature))
    return f"named tensors {shown}"


def input_mismatch(signature: Signature, reference: Signature) -> str | None:
    """Why a model of `signature` cannot take the input built for `reference`'s, or None when it can."""
    same_inputs = signature.kind != NAMED_TENSORS or _inputs(signature) == _inputs(reference)
    if signature.kind == reference.kind and same_inputs:
        return None
    return f"takes {_shown_input(signature)}, not {_shown_input(reference)}"


def route_model(route: str, uri: str, signature_name: str, input_features: Mapping[str, str]) -> RouteModel:
    """A route's model resolved (its newest complete version) and its signature read; errors name the route."""
    try:
        spec = resolve_model(ModelSpec(uri, route))
        return RouteModel(spec, serving_signature(spec.uri, signature_name, input_features))
    except ParameterError as error:
        raise ParameterError(f"route {route!r}: {error}") from None


def check_route_field(config: InferenceConfig, plan: InputPlan) -> None:
    """The route field is one of the input's fields where the launcher has seen them: a column of the CSV header
    (the key column, or another), or a field of the first JSON Lines record. Fields of Examples, tables and
    messages are not read at launch."""
    field = config.routing.field
    if plan.header and field not in plan.header:
        raise ParameterError(
            f"--route_field={field} is not a column of the CSV header of {plan.header_file} (columns: "
            f"{', '.join(plan.header)}); name the column that holds each record's route"
        )
    if plan.first_fields and field not in plan.first_fields:
        raise ParameterError(
            f"--route_field={field} is not a field of the first record of {plan.first_file} (fields: "
            f"{', '.join(plan.first_fields)}); name the field that holds each record's route"
        )


def plan_routes(config: InferenceConfig) -> RoutePlan:
    """Read the route table, resolve every route's model and check that they all take the same input."""
    routing = config.routing
    uris = read_route_table(routing.table)
    if routing.default_route is not None and routing.default_route not in uris:
        raise ParameterError(
            f"--default_route={routing.default_route} is not a route of the table {routing.table} "
            f"(routes: {table_routes(uris)})"
        )

    def resolved(item: tuple[str, str]) -> RouteModel:
        return route_model(item[0], item[1], config.signature_name, config.input_features)

    with ThreadPoolExecutor(LAUNCH_THREADS) as pool:
        routes = dict(zip(uris, pool.map(resolved, uris.items()), strict=True))
    reference = routing.default_route or next(iter(routes))
    why = "the default route" if routing.default_route else "the first route"
    for route, model in routes.items():
        mismatch = input_mismatch(model.signature, routes[reference].signature)
        if mismatch:
            raise ParameterError(
                f"route {route!r} (model {model.spec.uri}) {mismatch} as route {reference!r} ({why}) does; every "
                "route's model must take the same input, built once per record before it is routed"
            )
    return RoutePlan(routing.table, routing.field, routes, reference, routing.default_route)
