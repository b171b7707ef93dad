"""Routed inference: each record to its route's model, grouped so that every batch is one model's batch.

Records are routed by the value of --route_field: a route the table lists goes to its model; any other route,
and a record with none, goes to --default_route's model, or becomes a `route` dead letter when there is none.

How a batch becomes one model's batch:
- batch: a GroupByKey on the route. Each input batch is split by route first and its parts grouped, so the
  shuffle moves every record once (about its size as read, pickled) in one element per route per input batch,
  and each route's records come out together, re-cut into batches of --max_batch_size. A worker then loads a
  route's model once for all its records, whatever the records' order in the input.
- streaming: no shuffle. Each batch a bundle made is split by route where it is, so records are never held back
  for a window to close; batches are smaller when one bundle holds many routes, and a worker whose bundles
  touch more routes than --max_models_per_worker loads models again.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Container, Iterable

import apache_beam as beam
from apache_beam import typehints
from apache_beam.ml.inference.base import RunInference

from transforms.config import InferenceConfig
from transforms.dead_letters import record_dead_letter
from transforms.inference.batches import Batch
from transforms.inference.patterns import ENCODE_STAGE, ModelFeeds, ModelInputs, first_input
from transforms.inference.predict import DEAD_LETTERS, Answered, batch_dead_letters
from transforms.inference.route_refresh import SharedRoutes
from transforms.inference.route_table import route_text
from transforms.inference.routed_batches import RoutedAnswer, RoutedFeed
from transforms.inference.routed_models import ROUTED_NAMESPACE, RoutedModelHandler
from transforms.inference.routes import RoutePlan
from transforms.records.coders import RecordBatch
from transforms.records.parsing import Record

ROUTE_STAGE = "route"


class RouteError(ValueError):
    """A record that no model can take: its route is not in the table and there is no default route."""


class Router:
    """The route of a record: its route field's value if the table lists it, else the default route.

    `routes` is the table's routes: fixed at launch in batch, a LiveRoutes under a stream that refreshes them.
    """

    def __init__(self, field: str, key_field: str, routes: Container[str], default_route: str | None, table: str):
        self._field = field
        self._key_field = key_field
        self._routes = routes
        self._default_route = default_route
        self._table = table

    def with_routes(self, routes: Container[str]) -> Router:
        return Router(self._field, self._key_field, routes, self._default_route, self._table)

    def value(self, record: Record) -> str | None:
        """The record's route field as text (None when it has none); raises ValueError for a field of several."""
        if self._field == self._key_field:
            return record.key
        try:
            return route_text(record.features.get(self._field))
        except ValueError as error:
            raise RouteError(f"route field {self._field!r} {error}") from None

    def __call__(self, record: Record) -> str:
        value = self.value(record)
        if value in self._routes:
            return value
        if self._default_route is not None:
            return self._default_route
        if value is None:
            raise RouteError(f"record has no route field {self._field!r}, and no --default_route takes it")
        raise RouteError(
            f"route {value!r} (field {self._field!r}) has no model in the route table {self._table}, and no "
            "--default_route takes it"
        )


class _RouteRecords(beam.DoFn):
    """A batch of records in, (route, its records) out for each route it holds, and a dead letter per unroutable.

    With `live`, the routes are the worker's refreshed table (transforms/inference/route_refresh.py).
    """

    def __init__(self, router: Router, live: SharedRoutes | None = None):
        self._router = router
        self._live = live
        self._routes = None

    def setup(self) -> None:
        if self._live is not None:
            self._routes = self._live.acquire()
            self._router = self._router.with_routes(self._routes)

    def process(self, records: list[Record]):
        if self._routes is not None:
            self._routes.count_events()
        by_route = defaultdict(RecordBatch)
        for record in records:
            try:
                by_route[self._router(record)].append(record)
            except RouteError as error:
                yield beam.pvalue.TaggedOutput(DEAD_LETTERS, record_dead_letter(ROUTE_STAGE, error, record))
        yield from by_route.items()


def route_batches(element: tuple[str, Iterable[list[Record]]], max_batch_size: int) -> Iterable[tuple[str, Batch]]:
    """A route's grouped records, re-cut into batches of at most `max_batch_size`."""
    route, groups = element
    chunk: list[Record] = []
    for records in groups:
        for record in records:
            chunk.append(record)
            if len(chunk) == max_batch_size:
                yield route, Batch(chunk)
                chunk = []
    if chunk:
        yield route, Batch(chunk)


def _one_batch(element: tuple[str, list[Record]]) -> tuple[str, Batch]:
    route, records = element
    return route, Batch(list(records))


class _RoutedInput(beam.DoFn):
    """A route's batch in, fed its model's inputs (RoutedFeed) out, and an `encode` dead letter per record not fed.

    The same step as an unrouted pattern's encoding (patterns.ModelFeeds), with the route kept beside the batch.
    """

    def __init__(self, inputs: ModelInputs):
        self._inputs = inputs

    def process(self, element: tuple[str, Batch]):
        route, batch = element
        for out in ModelFeeds(ENCODE_STAGE, self._inputs, route).process(batch):
            yield out if isinstance(out, beam.pvalue.TaggedOutput) else RoutedFeed(route, out)


class _RoutedAnswered(beam.DoFn):
    """A route's answer in, the batch with its outputs out; a dead letter naming the route's model per failure."""

    def process(self, routed: RoutedAnswer):
        yield from Answered(routed.route).process(routed.answer)


def _failed_batch(failed: tuple[RoutedFeed, BaseException]):
    routed, error = failed
    return batch_dead_letters((routed.feed, error), routed.route)


class RoutedPredictions(beam.PTransform):
    """predict, postprocess and keyed with --route_field: batches of records in, (results, dead letters) out."""

    def __init__(self, config: InferenceConfig, plan: RoutePlan, prediction_logs: bool = False):
        super().__init__()
        self._config = config
        self._plan = plan
        self._router = Router(plan.field, config.key_field, frozenset(plan.routes), plan.default_route, plan.table)
        # Under a stream with refreshes, the table is read again on the workers: new routes serve without a relaunch.
        self._live = None
        if config.streaming and config.model_refresh_seconds:
            self._live = SharedRoutes(plan, config.model_refresh_seconds, config.signature_name, config.input_features)
        self._handler = RoutedModelHandler(
            plan.routes,
            config.batching,
            config.routing.max_models_per_worker,
            prediction_logs=prediction_logs,
            refresh_seconds=config.model_refresh_seconds,
            input_features=config.input_features,
            live=self._live,
            model_copies=config.model_copies,
        )

    def expand(self, records: beam.PCollection):
        route = beam.ParDo(_RouteRecords(self._router, self._live)).with_output_types(typehints.Tuple[str, RecordBatch])
        routed, unrouted = records | "Route" >> route.with_outputs(DEAD_LETTERS, main="routed")
        if records.is_bounded:
            batches = (
                routed
                | "GroupByRoute" >> beam.GroupByKey()
                | "RouteBatches" >> beam.FlatMap(route_batches, self._config.batching.max_batch_size)
            )
        else:
            batches = routed | "RouteBatch" >> beam.Map(_one_batch)
        batches.element_type = typehints.Tuple[str, Batch]
        inputs = first_input(self._plan.signature, self._config)
        encode = beam.ParDo(_RoutedInput(inputs)).with_output_types(RoutedFeed)
        feeds, encode_failures = batches | "Encode" >> encode.with_outputs(DEAD_LETTERS, main="feeds")
        answers, failed = (
            feeds
            | "RunInference"
            >> RunInference(self._handler, metrics_namespace=ROUTED_NAMESPACE).with_exception_handling()
        )
        answers.element_type = RoutedAnswer
        results, failures = answers | "SplitFailures" >> beam.ParDo(_RoutedAnswered()).with_outputs(
            DEAD_LETTERS, main="batches"
        )
        results.element_type = Batch
        batch_failures = failed.failed_inferences | "BatchFailures" >> beam.FlatMap(_failed_batch)
        dead_letters = (unrouted, encode_failures, failures, batch_failures) | "DeadLetters" >> beam.Flatten()
        return results, dead_letters


def routed_transform(config: InferenceConfig, plan: RoutePlan) -> beam.PTransform:
    """The routed form of --pattern (predict, postprocess or keyed)."""
    return RoutedPredictions(config, plan, prediction_logs=config.pattern == "predict")
