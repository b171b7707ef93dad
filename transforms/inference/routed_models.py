"""The models of a routed job on one worker process: loaded as their routes' batches come, at most N at once.

Beam's RunInference holds one model per process (its shared handle); for a routed job that model is RoutedModels,
a least-recently-used cache of the routes' models. A batch of a route not loaded loads its model (staged and
served as any model is, refreshing on its own under a stream); loading one past --max_models_per_worker evicts
the least recently used. Loads and evictions are Beam counters, in total (`inference/routed_model_loads`,
`routed_model_evictions`) and per route (`RunInference.<route>/version_<v>_loads`, `.../evictions`). An evicted
model is freed when the last batch using it ends. Loads take a lock: two threads of a process never load the
same model twice, and the cap holds however many threads ask at once. With --model_copies the cache itself is
Beam's shared model: one per copy on the worker machine, its cap per copy, every process's batches answered there.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from apache_beam.ml.inference.base import ModelHandler

from transforms.config import Batching, ModelSpec
from transforms.counters import NAMESPACE
from transforms.inference.batches import ModelAnswer, ModelOutputs, joined
from transforms.inference.model_refresh import (
    SERVED,
    LoadedModel,
    Refresh,
    ServingModel,
    count_model_event,
    model_metrics_namespace,
)
from transforms.inference.predict import (
    IsolatedAnswer,
    OutputArrays,
    SerializedPredictionLogs,
    StagedModelHandler,
    count_events,
)
from transforms.inference.prediction_logs import with_model_name
from transforms.inference.route_refresh import SharedRoutes
from transforms.inference.routed_batches import RoutedAnswer, RoutedFeed, RoutedFeedCoder
from transforms.inference.routes import RouteModel
from transforms.inference.shared_graphs import SharedGraphs
from transforms.inference.signatures import CLASSIFY, REGRESS, Signature

ROUTED_MODEL_LOADS = "routed_model_loads"
ROUTED_MODEL_EVICTIONS = "routed_model_evictions"
EVICTIONS = "evictions"
# RunInference's own metrics (batches, latencies) of every route together.
ROUTED_NAMESPACE = "RunInference.routed"
_FEED = RoutedFeedCoder()


class RoutedModels:
    """Route -> its loaded model, at most `capacity` of them, the least recently used evicted first.

    Loads and evictions are kept as counters to count, (namespace, name) each, handed to the caller with each
    answer (`served`): with --model_copies this object lives in one process of the machine, where no DoFn counts.
    """

    def __init__(self, capacity: int, load: Callable[[str], Any]):
        self._capacity = capacity
        self._load = load
        self._models: OrderedDict[str, Any] = OrderedDict()
        self._counters: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._models)

    def routes(self) -> list[str]:
        """The routes loaded now, least recently used first."""
        with self._lock:
            return list(self._models)

    def get(self, route: str) -> Any:
        """The route's model, loaded now if it is not (evicting the least recently used past the capacity)."""
        with self._lock:
            model = self._models.get(route)
            if model is not None:
                self._models.move_to_end(route)
                return model
            model = self._load(route)
            self._counters.append((NAMESPACE, ROUTED_MODEL_LOADS))
            self._models[route] = model
            while len(self._models) > self._capacity:
                evicted, _ = self._models.popitem(last=False)
                self._counters += [(NAMESPACE, ROUTED_MODEL_EVICTIONS), (model_metrics_namespace(evicted), EVICTIONS)]
            return model

    def taken_counters(self) -> list[tuple[str, str]]:
        """The counters of the loads and evictions since the last call."""
        with self._lock:
            counters, self._counters = self._counters, []
        return counters

    def served(self, route: str, inputs: list) -> tuple[Any, ModelSpec, list[tuple[str, str]]]:
        """The route's model's answer to `inputs` (IsolatedAnswer's parts and failures), where the model is, with
        the version that answered and the counters to count (as ServingModel.served)."""
        serving, answer = self.get(route)
        result, spec, counters = serving.served(IsolatedAnswer(answer), inputs)
        return result, spec, self.taken_counters() + counters


def _log_type(signature: Signature) -> str:
    return {CLASSIFY: "classify_log", REGRESS: "regress_log"}.get(signature.kind, "predict_log")


class NamedPredictionLogs:
    """A route's answer as PredictionLogs naming the route's model (model_spec.name) and its version."""

    def __init__(self, route: str, signature: Signature):
        self._route = route
        self._log_type = _log_type(signature)
        self._logs = SerializedPredictionLogs(route, signature)

    def __call__(self, loaded: LoadedModel, inputs) -> ModelOutputs:
        outputs = self._logs(loaded, inputs)
        return outputs._replace(logs=with_model_name(outputs.logs, self._log_type, self._route))


class RoutedModelHandler(ModelHandler):
    """Each element a route's fed batch (RoutedFeed): its route's model answers it, one RoutedAnswer comes out.

    The model RunInference loads is the process's RoutedModels; a route's own model is loaded at its first batch.
    Its model is named after its route, as are its rows, counters and dead letters. `refresh_seconds` (streaming)
    makes each route's model look for newer versions of its base on its own. Route models that are one graph share
    one session on it, each restoring its own variables (transforms/inference/shared_graphs.py); each still counts
    as a load, and is evicted, on its own.
    """

    def __init__(
        self,
        routes: Mapping[str, RouteModel],
        batching: Batching,
        capacity: int,
        prediction_logs: bool = False,
        refresh_seconds: int | None = None,
        input_features: Mapping[str, str] | None = None,
        live: SharedRoutes | None = None,
        model_copies: int | None = None,
    ):
        super().__init__()
        self._model_copies = model_copies
        self._routes = dict(routes)
        self._live = live
        self._batching = batching
        self._capacity = capacity
        self._prediction_logs = prediction_logs
        self._refresh_seconds = refresh_seconds
        self._input_features = dict(input_features or {})

    def should_skip_batching(self) -> bool:
        return True

    def _load_route(
        self, routes: Mapping[str, RouteModel], graphs: SharedGraphs, route: str
    ) -> tuple[ServingModel, Any]:
        model = routes[route]
        spec, signature = model.spec, model.signature
        refresh = None
        if self._refresh_seconds and spec.base:
            refresh = Refresh(self._refresh_seconds, signature, signature.output_aliases, self._input_features)
        serving = StagedModelHandler(spec, signature, self._batching, refresh, graphs).load_model()
        answer = NamedPredictionLogs(route, signature) if self._prediction_logs else OutputArrays(route)
        return serving, answer

    def load_model(self) -> RoutedModels:
        """The process's cache of route models; a route's model as the launch resolved it, or, under a stream that
        refreshes, as the worker's route table has it now (a route added since the launch included)."""
        routes = self._live.acquire() if self._live is not None else self._routes
        return RoutedModels(self._capacity, partial(self._load_route, routes, SharedGraphs()))

    def share_model_across_processes(self) -> bool:
        return self._model_copies is not None

    def model_copies(self) -> int:
        return self._model_copies or 1

    def run_inference(self, routed: RoutedFeed, models: RoutedModels, inference_args=None) -> list[RoutedAnswer]:
        feed = routed.feed
        (parts, failures), spec, counters = models.served(routed.route, feed.inputs)
        count_events(counters)
        count_model_event(spec, SERVED, len(feed) - len(failures))
        return [RoutedAnswer(routed.route, ModelAnswer(feed.batch, joined(parts), tuple(failures)))]

    def get_num_bytes(self, routed: RoutedFeed) -> int:
        return _FEED.estimate_size(routed)
