"""Test-only start-up hook for main.py subprocesses that talk to local emulators.

Credentials: with no Google credentials on the machine, Beam retries `google.auth.default` with backoff
(about 25 s per process) before falling back to anonymous access. Emulators need no credentials, so when the tests set
TFX_INFERENCE_TEST_ANONYMOUS=1 (and put this folder on PYTHONPATH), google.auth.default answers at once with
anonymous credentials.

BigQuery: when TFX_INFERENCE_TEST_BIGQUERY_GRPC is set too, Beam's BigQuery clients are pointed at bqemulator.
Nothing like this ships in the product.
"""

import os

if os.environ.get("TFX_INFERENCE_TEST_ANONYMOUS") == "1":
    import google.auth
    from google.auth.credentials import AnonymousCredentials

    def _anonymous(*args, **kwargs):
        return AnonymousCredentials(), os.environ.get("GOOGLE_CLOUD_PROJECT", "test-project")

    google.auth.default = _anonymous

if os.environ.get("TFX_INFERENCE_TEST_BIGQUERY_GRPC"):
    # Beam has no BigQuery endpoint option: point its REST client (apitools) at the emulator's REST port, and
    # its Storage Read client at the emulator's gRPC port over an insecure channel.
    import grpc
    from apache_beam.io.gcp.internal.clients.bigquery import bigquery_v2_client
    from google.cloud import bigquery_storage_v1
    from google.cloud.bigquery_storage_v1.services.big_query_read.transports import BigQueryReadGrpcTransport

    bigquery_v2_client.BigqueryV2.BASE_URL = os.environ["BIGQUERY_EMULATOR_HOST"].rstrip("/") + "/bigquery/v2/"
    _read_client_init = bigquery_storage_v1.BigQueryReadClient.__init__

    def _emulated_read_client(self, *args, **kwargs):
        channel = grpc.insecure_channel(os.environ["TFX_INFERENCE_TEST_BIGQUERY_GRPC"])
        kwargs = {k: v for k, v in kwargs.items() if k not in ("credentials", "client_options", "transport")}
        _read_client_init(self, *args, transport=BigQueryReadGrpcTransport(channel=channel), **kwargs)

    bigquery_storage_v1.BigQueryReadClient.__init__ = _emulated_read_client
