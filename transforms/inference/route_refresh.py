"""A routed stream's route table, re-read on every worker process so that a new tenant's model serves without a
relaunch.

Every --model_refresh_seconds a thread reads the table again (model_uris: a root, a JSON or a CSV file). A route
not seen before is resolved as at launch (its newest complete version) and checked to take the input every route
takes; then the routing step sends its records to it, and the routed handler loads its model at its first batch.
So a route added to the table serves within one refresh period plus its load; its records before that went to
the default route's model, or were `route` dead letters. A new route whose model does not take the input every
route takes is refused once, with an ERROR log saying why (looked at again only if the table points the route at
another model); one not complete yet is looked at again at the next refresh. A route removed from the table is no
longer routed to (its records take the default route), and its loaded model ages out of the cache. A route keeps
the model directory it was first resolved from: its versions refresh as any model's do (model_refresh.py).

One table per worker process, shared by the routing step and the handler through Beam's `shared.Shared`, which
Beam pickles with the same key into both, so they see the same routes and one thread reads the table.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Mapping

import apache_beam as beam
from apache_beam.utils import shared

from transforms.counters import NAMESPACE
from transforms.inference.route_table import read_route_table
from transforms.inference.routes import RouteModel, RoutePlan, input_mismatch, route_model

ROUTES_ADDED = "routes_added"
ROUTES_REFUSED = "routes_refused"


class LiveRoutes:
    """Route -> its model, as the table says now. Reads are lock-free: a refresh replaces the whole mapping."""

    def __init__(self, plan: RoutePlan, seconds: int, signature_name: str, input_features: Mapping[str, str]):
        self._plan = plan
        self._routes: Mapping[str, RouteModel] = dict(plan.routes)
        self._signature_name = signature_name
        self._input_features = dict(input_features)
        self._refused: dict[str, str] = {}  # route -> the model directory refused for it
        self._events: list[str] = []
        self._lock = threading.Lock()
        # A worker (or a runner's fresh copy of the routing step) that starts after routes were added routes to them
        # from its first record, not a refresh period later.
        _refreshed(self)
        refresher = threading.Thread(
            target=_refresh_every, args=(weakref.ref(self), seconds), name="route-table-refresh", daemon=True
        )
        refresher.start()

    @property
    def table(self) -> str:
        return self._plan.table

    def __contains__(self, route: object) -> bool:
        return route in self._routes

    def __getitem__(self, route: str) -> RouteModel:
        return self._routes[route]

    def count_events(self) -> None:
        """Count the routes added and refused since the last call: counters only count inside a DoFn call."""
        with self._lock:
            events, self._events = self._events, []
        for event in events:
            beam.metrics.Metrics.counter(NAMESPACE, event).inc()

    def refresh(self) -> None:
        """Read the table again: new routes resolved and checked, removed ones dropped."""
        uris = read_route_table(self._plan.table)
        current = self._routes
        routes = {route: model for route, model in current.items() if route in uris}
        for route, uri in uris.items():
            if route in routes or self._refused.get(route) == uri:
                continue
            reason = None
            try:
                model = route_model(route, uri, self._signature_name, self._input_features)
                mismatch = input_mismatch(model.signature, self._plan.signature)
                if mismatch:
                    reason = f"its model {model.spec.uri} {mismatch} as route {self._plan.reference!r} does"
            except Exception as error:  # an incomplete or unreadable model: looked at again next time
                logging.warning("route table %s: new route %r not ready: %s", self._plan.table, route, error)
                continue
            if reason is not None:
                self._refused[route] = uri
                logging.error("route table %s: new route %r refused: %s", self._plan.table, route, reason)
                self._record(ROUTES_REFUSED)
                continue
            logging.warning("route table %s: new route %r serves %s", self._plan.table, route, model.spec.uri)
            routes[route] = model
            self._record(ROUTES_ADDED)
        self._routes = routes  # one assignment: a record is routed by the old table or the new, whole

    def _record(self, event: str) -> None:
        with self._lock:
            self._events.append(event)


def _refresh_every(routes: weakref.ref, seconds: int) -> None:
    """The refresh thread: it ends once its table is no longer used."""
    while True:
        time.sleep(seconds)
        live = routes()
        if live is None:
            return
        _refreshed(live)
        del live


def _refreshed(live: LiveRoutes) -> None:
    try:
        live.refresh()
    except Exception as error:  # a table that cannot be read now (the bucket unreachable) is read next time
        logging.warning("route table %s could not be read again: %s", live.table, error)


class SharedRoutes:
    """The worker process's LiveRoutes, made at its first use: pickled into the routing step and into the handler
    with one key, so both get the same table and one thread refreshes it."""

    def __init__(self, plan: RoutePlan, seconds: int, signature_name: str, input_features: Mapping[str, str]):
        self._shared = shared.Shared()
        self._arguments = (plan, seconds, signature_name, dict(input_features))

    def acquire(self) -> LiveRoutes:
        return self._shared.acquire(lambda: LiveRoutes(*self._arguments))
