"""Models refreshed under a running stream: a newer complete version found, checked, loaded and swapped in.

Each worker process holds, per model, a ServingModel: the version serving now, and a thread that looks every
--model_refresh_seconds for the newest complete version of the model's base (model_versions.py), checks it fits
the running one (the same kind of input, and every output alias the launch version has: the rows' columns and
multi_sequence's chain output), stages and loads it beside the running one, then swaps it in with one
assignment. Each batch takes the version serving when it starts and keeps it to its end, and its rows name
that version. A version that does not fit, or cannot be staged or loaded, is refused once: an ERROR log, a
counter, and the running version keeps serving. A version still being written is passed over until complete.

Beam's own way, RunInference's `model_metadata_pcoll` side input fed by PeriodicImpulse (as WatchFilePattern
does) and the handler's `update_model_path`, cannot run on Beam 2.77's local streaming runner, where the proof
runs: PeriodicImpulse (a splittable DoFn) fails there ("ProcessKeyedElements/GroupByKey was not replaced as
expected"), and a main input waits for a global-window side input until that side input's watermark reaches
the end of time, so no record would ever be served. The swap is therefore owned here, the same on every runner.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam

from transforms.config import ModelSpec, ParameterError
from transforms.counters import UNVERSIONED
from transforms.inference.model_versions import incomplete_reason, numbered_versions
from transforms.inference.signatures import NAMED_TENSORS, Signature, serving_signature

LOADS = "loads"
REFUSALS = "refusals"
SERVED = "served"


def model_metrics_namespace(model_name: str) -> str:
    """The namespace RunInference's own metrics of this model use, which the version counters share."""
    return f"RunInference.{model_name}"


def version_counter_name(version: str | None, event: str) -> str:
    """`version_<number>_<event>`: loads, refusals and examples served, per version (the summary shows refusals)."""
    return f"version_{version or UNVERSIONED}_{event}"


def model_event_counter(model: ModelSpec, event: str) -> tuple[str, str]:
    """The (namespace, name) of the counter of one version's event."""
    return model_metrics_namespace(model.name), version_counter_name(model.version, event)


def count_model_event(model: ModelSpec, event: str, count: int = 1) -> None:
    beam.metrics.Metrics.counter(*model_event_counter(model, event)).inc(count)


def model_at_version(model: ModelSpec, uri: str) -> ModelSpec:
    """The same model (name, base) at another version directory of its base."""
    uri = uri.rstrip("/")
    return ModelSpec(uri, model.name, version=uri.rsplit("/", 1)[-1], base=model.base)


@dataclass(frozen=True)
class LoadedModel:
    """A loaded model with the tfx-bsl handler that loaded it and its spec (version None for a plain directory).

    A batch takes one LoadedModel and keeps it to its end, so the version its rows name is the one that computed
    them, even while a refresh swaps in the next version for later batches.
    """

    handler: Any
    model: Any
    spec: ModelSpec

    @property
    def version(self) -> str | None:
        return self.spec.version


@dataclass(frozen=True)
class Refresh:
    """What a worker needs to refresh one model: how often, and what a new version must keep to fit.

    `signature` is the launch version's; `input_features` settles a new version's kind as it settled it.
    """

    seconds: int
    signature: Signature
    required_outputs: tuple[str, ...]
    input_features: dict[str, str] = field(default_factory=dict)

    def signature_of(self, uri: str) -> Signature:
        """The signature of the same name in the model at `uri` (a version directory), checked as at launch."""
        return serving_signature(uri, self.signature.name, self.input_features)


def incompatibility(candidate: ModelSpec, refresh: Refresh) -> str | None:
    """Why `candidate` cannot replace the running version, or None when its signature fits.

    It fits when it takes what the pipeline builds for the running one (the same kind of input; for named
    tensors the same inputs, dtypes and shapes) and has every output alias the pipeline uses.
    """
    running = refresh.signature
    try:
        signature = refresh.signature_of(candidate.uri)
    except ParameterError as error:
        return str(error)
    if signature.kind != running.kind:
        return (
            f"its signature {running.name!r} is a {signature.kind} signature and the running version's a "
            f"{running.kind} one: the pipeline builds the running version's inputs"
        )
    if signature.kind == NAMED_TENSORS and _inputs(signature) != _inputs(running):
        return (
            f"its signature {running.name!r} takes inputs {_shown_inputs(signature)}, the running version's "
            f"{_shown_inputs(running)}"
        )
    missing = [alias for alias in refresh.required_outputs if alias not in signature.output_aliases]
    if missing:
        return (
            f"its signature {running.name!r} lacks output(s) {', '.join(missing)} that the running version has "
            f"(it has {', '.join(signature.output_aliases)})"
        )
    return None


def _inputs(signature: Signature) -> set[tuple]:
    return {(info.alias, info.dtype, info.shape) for info in signature.inputs}


def _shown_inputs(signature: Signature) -> str:
    return ", ".join(f"{alias} ({dtype} {list(shape or ())})" for alias, dtype, shape in sorted(_inputs(signature)))


class ServingModel:
    """The model object RunInference holds: the version serving now, swapped by a refresh thread when one is given.

    Counters can only be incremented inside a DoFn call, so the thread's loads and refusals wait here until the
    next batch asks for the current version. (A plain object, not a tuple: Beam's shared model cache holds it by
    weak reference.)
    """

    def __init__(self, loaded: LoadedModel, load: Callable[[ModelSpec], LoadedModel], refresh: Refresh | None):
        self._loaded = loaded
        self._events: list[tuple[ModelSpec, str]] = [(loaded.spec, LOADS)]
        self._lock = threading.Lock()
        if refresh is not None and loaded.spec.base is not None:
            refresher = _Refresher(weakref.ref(self), loaded.spec, load, refresh)
            # A worker that starts (or reloads) after newer versions arrived serves the newest from its first batch.
            refresher.check(self)
            refresher.start()

    def current(self) -> LoadedModel:
        for spec, event in self._taken_events():
            count_model_event(spec, event)
        return self._loaded

    def served(self, work: Callable[[LoadedModel, Any], Any], inputs: Any) -> tuple[Any, ModelSpec, list[tuple]]:
        """`work` done with the version serving now, where the model is; with it, that version's spec and the
        counters of the loads and refusals since the last call, (namespace, name) each, for the caller to count.

        With --model_copies the model lives in one process of the machine, and the others call this through Beam's
        proxy (apache_beam.utils.multi_process_shared): `work`, the inputs and what it makes cross processes
        pickled, the loaded model never does. Counters only count in a DoFn's own process: the caller counts them.
        """
        loaded = self._loaded
        return work(loaded, inputs), loaded.spec, [model_event_counter(*event) for event in self._taken_events()]

    def _taken_events(self) -> list[tuple[ModelSpec, str]]:
        with self._lock:
            events, self._events = self._events, []
        return events

    def swap(self, loaded: LoadedModel) -> None:
        logging.warning("model %s: version %s now serving (%s)", loaded.spec.name, loaded.version, loaded.spec.uri)
        self._loaded = loaded  # one assignment: a batch sees the old version or the new, whole
        self.record(loaded.spec, LOADS)

    def refuse(self, model: ModelSpec, reason: str) -> None:
        """A version that will not serve: said at ERROR with the reason, and counted; the running version goes on."""
        logging.error(
            "model %s: version %s (%s) refused, the running version keeps serving: %s",
            model.name,
            model.version,
            model.uri,
            reason,
        )
        self.record(model, REFUSALS)

    def record(self, model: ModelSpec, event: str) -> None:
        with self._lock:
            self._events.append((model, event))


class _Refresher(threading.Thread):
    """Every `refresh.seconds`, the newest servable version of the base: loaded and swapped in when it is new.

    It holds its ServingModel weakly and ends when the model is no longer used.
    """

    def __init__(self, serving, model: ModelSpec, load: Callable[[ModelSpec], LoadedModel], refresh: Refresh):
        super().__init__(name=f"model-refresh-{model.name}", daemon=True)
        self._serving = serving
        self._running = model
        self._load = load
        self._refresh = refresh
        self._refused: set[str] = set()

    def run(self) -> None:
        while True:
            time.sleep(self._refresh.seconds)
            serving = self._serving()
            if serving is None:
                return
            self.check(serving)
            del serving

    def check(self, serving: ServingModel) -> None:
        try:
            self._swap_in_newest(serving)
        except Exception as error:  # a listing that fails (the bucket unreachable) is tried again next time
            logging.warning("model %s: looking for a new version failed: %s", self._running.name, error)

    def _swap_in_newest(self, serving: ServingModel) -> None:
        for candidate in numbered_versions(self._running.base):
            if candidate.number <= int(self._running.version):
                return
            if candidate.version in self._refused or incomplete_reason(candidate.uri) is not None:
                continue  # refused already, or still being written (looked at again next time)
            spec = model_at_version(self._running, candidate.uri)
            reason = incompatibility(spec, self._refresh)
            if reason is None:
                try:
                    loaded = self._load(spec)
                except Exception as error:
                    reason = f"it could not be staged or loaded ({type(error).__name__}: {error})"
            if reason is not None:
                self._refused.add(spec.version)
                serving.refuse(spec, reason)
                continue
            serving.swap(loaded)
            self._running = spec
            return
