"""The local runner is chosen here, so a local run never downloads Prism or waits on the network."""

from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner
from apache_beam.runners.portability.fn_api_runner.fn_runner import FnApiRunner

from transforms.runner import LOCAL_PUBSUB_PULL, is_local, local_runner


def test_batch_runs_locally_on_the_fn_api_runner_by_default_and_for_direct_runner():
    for argv in ([], ["--runner=DirectRunner"]):
        options = PipelineOptions(argv)
        assert isinstance(local_runner(options), FnApiRunner)
        assert is_local(options)


def test_streaming_runs_on_the_bundle_based_direct_runner():
    assert isinstance(local_runner(PipelineOptions(["--streaming"])), BundleBasedDirectRunner)


def test_remote_runners_are_left_to_beam_and_not_waited_on():
    options = PipelineOptions(["--runner=DataflowRunner"])
    assert local_runner(options) is None
    assert not is_local(options)


def test_local_streaming_pulls_up_to_a_hundred_pubsub_messages_at_once():
    from apache_beam.runners.direct import transform_evaluator

    local_runner(PipelineOptions(["--streaming"]))
    asked = []

    class Client:
        def pull(self, *, subscription, max_messages, timeout):
            asked.append(max_messages)

    state = type("State", (), {"client": Client()})()
    evaluator = transform_evaluator._PubSubReadEvaluator
    transform = type("Transform", (), {})()
    evaluator._subscriber_client_cache[transform] = state
    evaluator._get_subscriber_client(transform).pull(subscription="s", max_messages=10, timeout=30)
    assert asked == [LOCAL_PUBSUB_PULL] == [100]
