"""Routing pieces without a pipeline: which route a record takes, and a worker's cache of route models."""

from __future__ import annotations

import threading
import time

import pytest

from transforms.inference.routed import RouteError, Router, route_batches
from transforms.inference.routed_models import RoutedModels
from transforms.records.parsing import Record


def _record(key: str | None = "k", **features) -> Record:
    return Record("id", key, features, b"raw", "source")


def _router(default: str | None = None, field: str = "region") -> Router:
    return Router(field, "key", ["eu", "us", "7"], default, "gs://b/models")


def test_a_listed_route_goes_to_its_model_and_any_other_to_the_default():
    router = _router(default="us")
    assert router(_record(region="eu")) == "eu"
    assert router(_record(region="mars")) == "us"
    assert router(_record(x=1.0)) == "us", "a record without a route is unlisted too"
    assert router(_record(region=7.0)) == "7", "a number read as a float routes as the whole number it is"


def test_the_key_can_be_the_route():
    assert _router(field="key")(_record(key="eu", region="us")) == "eu"


def test_without_a_default_an_unlisted_or_missing_route_says_why():
    router = _router()
    with pytest.raises(RouteError) as raised:
        router(_record(region="mars"))
    assert str(raised.value) == (
        "route 'mars' (field 'region') has no model in the route table gs://b/models, and no --default_route takes it"
    )
    with pytest.raises(RouteError, match=r"^record has no route field 'region', and no --default_route takes it$"):
        router(_record(x=1.0))
    with pytest.raises(RouteError, match=r"^route field 'region' has 2 values; a route is one value$"):
        router(_record(region=["eu", "us"]))


def test_a_routes_grouped_records_are_cut_into_batches_of_the_maximum_size():
    groups = [[_record(key=str(i)) for i in range(3)], [_record(key=str(i)) for i in range(3, 8)]]
    batches = list(route_batches(("eu", groups), 3))
    assert [route for route, _ in batches] == ["eu", "eu", "eu"]
    assert [[r.key for r in batch.records] for _, batch in batches] == [["0", "1", "2"], ["3", "4", "5"], ["6", "7"]]


def test_the_least_recently_used_model_is_evicted_past_the_capacity():
    loads = []
    models = RoutedModels(2, lambda route: loads.append(route) or f"model {route}")
    assert models.get("a") == "model a"
    models.get("b")
    models.get("a")  # a is now the most recently used: b goes first
    models.get("c")
    assert models.routes() == ["a", "c"]
    models.get("b")
    assert models.routes() == ["c", "b"]
    assert loads == ["a", "b", "c", "b"], "a model still loaded is never loaded again"


def test_threads_asking_at_once_load_one_model_at_a_time_and_keep_the_cap():
    active, most, loads = [0], [0], []

    def load(route: str) -> object:
        active[0] += 1
        most[0] = max(most[0], active[0])
        time.sleep(0.001)  # long enough for another thread to come in, were loads not serialised
        loads.append(route)
        active[0] -= 1
        return object()

    models = RoutedModels(3, load)
    asking = [lambda i=i: [models.get(f"r{(i + n) % 5}") for n in range(50)] for i in range(8)]
    threads = [threading.Thread(target=ask) for ask in asking]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most[0] == 1
    assert len(models) == 3
    assert set(loads) == {f"r{n}" for n in range(5)}


def test_a_routed_answer_hands_back_the_loads_and_evictions_for_the_caller_to_count():
    class Serving:
        """A ServingModel's stand-in: answers where it is, and hands back its own counters too."""

        def __init__(self, route: str):
            self.route = route

        def served(self, work, inputs):
            return work(f"{self.route} loaded", inputs), f"spec of {self.route}", [(f"RunInference.{self.route}", "v")]

    models = RoutedModels(1, lambda route: (Serving(route), lambda loaded, inputs: f"{loaded} answers {len(inputs)}"))
    assert models.served("a", [b"x", b"y"]) == (
        (["a loaded answers 2"], []),
        "spec of a",
        [("inference", "routed_model_loads"), ("RunInference.a", "v")],
    )
    assert models.served("b", [b"x"])[2] == [
        ("inference", "routed_model_loads"),
        ("inference", "routed_model_evictions"),
        ("RunInference.a", "evictions"),
        ("RunInference.b", "v"),
    ]
    assert models.served("b", [b"x"])[2] == [("RunInference.b", "v")], "counted once: taken by the answer"
