"""The runner: Beam's own for Dataflow and friends, an explicit local one for the DirectRunner."""

from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.runner import PipelineRunner

LOCAL_RUNNERS = (None, "DirectRunner", "SwitchingDirectRunner", "FnApiRunner", "BundleBasedDirectRunner")


def is_local(options: PipelineOptions) -> bool:
    """True when the pipeline runs in this process (and so should be waited on and summarised)."""
    return options.view_as(StandardOptions).runner in LOCAL_RUNNERS


def local_runner(options: PipelineOptions) -> PipelineRunner | None:
    """The local runner to use, or None to let Beam create the runner that --runner names.

    Beam 2.77's DirectRunner first tries the Prism runner, which it downloads from the internet;
    choosing the runner here means a local run neither fetches anything nor waits on the network.
    Batch runs go to the FnApiRunner (what the DirectRunner picks for batch, with its multi-process
    mode), streaming runs to the BundleBasedDirectRunner.
    """
    name = options.view_as(StandardOptions).runner
    if name not in (None, "DirectRunner", "SwitchingDirectRunner"):
        return None
    if options.view_as(StandardOptions).streaming:
        from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner

        return BundleBasedDirectRunner()
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    # As the DirectRunner does: workers in multi-process mode get the pipeline options this way.
    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    provision_info = fn_runner.ExtendedProvisionInfo(beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded))
    return fn_runner.FnApiRunner(provision_info=provision_info)
