"""Models refreshed under a running stream: newer complete versions found, checked, and fed to RunInference.

Beam's RunInference swaps models when its `model_metadata_pcoll` side input names a new `model_id`: it calls the
handler's `update_model_path` and loads the model again (transforms/inference/predict.py's StagedModelHandler
implements both; tfx-bsl's handler has neither). A watcher per model base, driven by PeriodicImpulse as Beam's
WatchFilePattern is, looks every --model_refresh_seconds for the newest complete version
(transforms/inference/model_versions.py). A version whose signature does not fit the running one (an Example
input, and every output alias the launch version has: the rows' columns and multi_sequence's chain output) is
refused here, once, with an ERROR log and a counter, and never reaches the workers; one that passes but cannot be
staged or loaded there is refused by the handler, which keeps the running version. The side input changes only
when the version does, so each firing holds one value, as the AsSingleton view RunInference reads requires.
"""

from __future__ import annotations

import logging
import time

import apache_beam as beam
from apache_beam.coders import StrUtf8Coder
from apache_beam.ml.inference.base import ModelMetadata
from apache_beam.transforms import trigger, window
from apache_beam.transforms.periodicsequence import PeriodicImpulse
from apache_beam.transforms.userstate import BagStateSpec, ReadModifyWriteStateSpec

from transforms.config import ModelSpec, ParameterError
from transforms.inference.model_versions import incomplete_reason, numbered_versions
from transforms.inference.signatures import serving_signature

LOADS = "loads"
REFUSALS = "refusals"
SERVED = "served"
UNVERSIONED = "unversioned"


def model_metrics_namespace(model_name: str) -> str:
    """The namespace RunInference's own metrics of this model use, which the version counters share."""
    return f"RunInference.{model_name}"


def version_counter_name(version: str | None, event: str) -> str:
    """`version_<number>_<event>`: loads, refusals and examples served, per version (read back by the summary)."""
    return f"version_{version or UNVERSIONED}_{event}"


def count_model_event(model: ModelSpec, event: str, count: int = 1) -> None:
    namespace = model_metrics_namespace(model.name)
    beam.metrics.Metrics.counter(namespace, version_counter_name(model.version, event)).inc(count)


def model_at_version(model: ModelSpec, uri: str) -> ModelSpec:
    """The same model (name, base) at another version directory of its base."""
    uri = uri.rstrip("/")
    return ModelSpec(uri, model.name, version=uri.rsplit("/", 1)[-1], base=model.base)


def refuse_version(model: ModelSpec, reason: str) -> None:
    """A version that will not serve: said at ERROR with the reason, and counted; the running version goes on."""
    logging.error(
        "model %s: version %s (%s) refused, the running version keeps serving: %s",
        model.name,
        model.version,
        model.uri,
        reason,
    )
    count_model_event(model, REFUSALS)


def incompatibility(candidate: ModelSpec, signature_name: str, required_outputs: tuple[str, ...]) -> str | None:
    """Why `candidate` cannot replace the running version, or None when its signature fits."""
    try:
        signature = serving_signature(candidate.uri, signature_name)
    except ParameterError as error:
        return str(error)
    missing = [alias for alias in required_outputs if alias not in signature.output_aliases]
    if missing:
        return (
            f"its signature {signature_name!r} lacks output(s) {', '.join(missing)} that the running version has "
            f"(it has {', '.join(signature.output_aliases)})"
        )
    return None


class _NewestServableVersion(beam.DoFn):
    """Per tick, the newest complete version that fits, as ModelMetadata: only when it differs from the last one.

    State is per model (the key): the version last sent, and the versions already refused, so a refusal is
    logged and counted once, not every tick.
    """

    SENT = ReadModifyWriteStateSpec("sent", StrUtf8Coder())
    REFUSED = BagStateSpec("refused", StrUtf8Coder())

    def __init__(self, model: ModelSpec, signature_name: str, required_outputs: tuple[str, ...]):
        self._model = model
        self._signature_name = signature_name
        self._required_outputs = required_outputs

    def _servable(self, refused: set[str], refuse) -> ModelSpec:
        """The newest version that is complete and fits; the launch version when none newer does."""
        for candidate in numbered_versions(self._model.base):
            if candidate.number <= int(self._model.version):
                break
            if candidate.version in refused:
                continue
            if incomplete_reason(candidate.uri) is not None:
                continue  # still being written: looked at again next tick, never refused for it
            spec = model_at_version(self._model, candidate.uri)
            reason = incompatibility(spec, self._signature_name, self._required_outputs)
            if reason is None:
                return spec
            refuse(spec, reason)
        return self._model

    def process(self, element, sent=beam.DoFn.StateParam(SENT), refused_state=beam.DoFn.StateParam(REFUSED)):
        refused = set(refused_state.read())

        def refuse(spec: ModelSpec, reason: str) -> None:
            refuse_version(spec, reason)
            refused_state.add(spec.version)

        try:
            servable = self._servable(refused, refuse)
        except Exception as error:  # a listing that fails (the bucket unreachable) is retried next tick
            logging.warning(
                "model %s: looking for new versions under %s failed: %s", self._model.name, self._model.base, error
            )
            servable = None
        if servable is not None and servable.uri != sent.read():
            if sent.read() is not None:
                logging.warning("model %s: swapping in version %s (%s)", servable.name, servable.version, servable.uri)
            sent.write(servable.uri)
            yield ModelMetadata(model_id=servable.uri, model_name="")


class WatchModelVersions(beam.PTransform):
    """A model's version to serve, as RunInference's `model_metadata_pcoll`: the launch version, then each newer
    complete one that fits, checked every `seconds`."""

    def __init__(self, model: ModelSpec, signature_name: str, seconds: int):
        super().__init__()
        if model.base is None:
            raise ValueError(f"model {model.name} ({model.uri}) is not a base of numbered versions: nothing to watch")
        self._model = model
        self._signature_name = signature_name
        self._seconds = seconds
        self._required_outputs = serving_signature(model.uri, signature_name).output_aliases

    def expand(self, pipeline: beam.Pipeline) -> beam.PCollection:
        return (
            pipeline
            | "Every refresh period" >> PeriodicImpulse(start_timestamp=time.time(), fire_interval=self._seconds)
            | "Per model" >> beam.Map(lambda _, name: (name, None), self._model.name)
            | "Newest servable version"
            >> beam.ParDo(_NewestServableVersion(self._model, self._signature_name, self._required_outputs))
            | "As a side input"
            >> beam.WindowInto(
                window.GlobalWindows(),
                trigger=trigger.Repeatedly(trigger.AfterProcessingTime(1)),
                accumulation_mode=trigger.AccumulationMode.DISCARDING,
            )
        )
