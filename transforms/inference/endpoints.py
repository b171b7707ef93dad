"""Vertex AI endpoints as models: the URI that names one, clients for it, and the launch-time check that it serves.

A model in --model_uris may be `vertex://projects/PROJECT/locations/LOCATION/endpoints/ENDPOINT`: the endpoint's
resource name (as the Console, gcloud and the client libraries print it) behind a scheme of its own, so that it
can never be mistaken for a local path. Calls go through google-cloud-aiplatform's own clients over REST, to
`LOCATION-aiplatform.googleapis.com` or to --vertex_api_endpoint (a Private Service Connect address, or a local
stand-in). A plain `http://` endpoint is sent no credentials: a token is never sent in clear.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud.aiplatform_v1 import EndpointServiceClient, PredictionServiceClient

from transforms.config import ParameterError, endpoint_location, endpoint_resource

# What the user must give the job's service account for an endpoint to be read at launch and called by workers.
ROLE = "roles/aiplatform.user"


def api_endpoint(resource: str, override: str | None) -> str:
    """Where the endpoint's API answers: --vertex_api_endpoint, else the regional `LOCATION-aiplatform` host."""
    return override or f"{endpoint_location(resource)}-aiplatform.googleapis.com"


def service_error(error: exceptions.GoogleAPICallError) -> tuple[str, str]:
    """The service's own status and message (`RESOURCE_EXHAUSTED`, `Quota exceeded ...`) from its error body;
    google-api-core's message puts the request's method and URL before it."""
    payload = {}
    if error.response is not None:
        try:
            payload = error.response.json().get("error", {})
        except (ValueError, AttributeError):
            payload = {}
    return payload.get("status") or type(error).__name__, payload.get("message") or error.message


def _client_arguments(address: str) -> dict:
    arguments = {"transport": "rest", "client_options": ClientOptions(api_endpoint=address)}
    if address.startswith("http://"):
        arguments["credentials"] = AnonymousCredentials()
    return arguments


def prediction_client(address: str) -> PredictionServiceClient:
    return PredictionServiceClient(**_client_arguments(address))


def endpoint_client(address: str) -> EndpointServiceClient:
    return EndpointServiceClient(**_client_arguments(address))


@dataclass(frozen=True)
class DeployedModel:
    """A model deployed to the endpoint: the id predictions name as their version, and its display name."""

    id: str
    display_name: str


def deployed_models(uri: str, override: str | None, timeout: float) -> tuple[DeployedModel, ...]:
    """The models the endpoint serves, read with the job's own credentials; ParameterError says why it cannot serve.

    Run at launch, where the Flex Template launcher runs as the job's service account: an endpoint that does not
    exist, that the account may not read (it may then not predict either), that cannot be reached, or that has no
    model deployed would fail every record, so the job is refused before it starts.
    """
    resource = endpoint_resource(uri)
    address = api_endpoint(resource, override)
    try:
        endpoint = endpoint_client(address).get_endpoint(name=resource, timeout=timeout)
    except exceptions.NotFound as error:
        raise ParameterError(f"Vertex AI endpoint {resource} does not exist ({service_error(error)[1]})") from None
    except exceptions.Forbidden as error:
        raise ParameterError(
            f"Vertex AI endpoint {resource} may not be read with the job's credentials "
            f"({service_error(error)[1]}); grant the job's service account {ROLE} (terraform/ does, for each "
            "endpoint in var.vertex_endpoints)"
        ) from None
    except exceptions.GoogleAPICallError as error:
        status, message = service_error(error)
        raise ParameterError(
            f"Vertex AI endpoint {resource} could not be read: {error.code} {status}: {message}"
        ) from None
    except OSError as error:
        raise ParameterError(f"Vertex AI endpoint {resource} cannot be reached at {address}: {error}") from None
    models = tuple(DeployedModel(model.id, model.display_name) for model in endpoint.deployed_models)
    if not models:
        raise ParameterError(f"Vertex AI endpoint {resource} has no model deployed: deploy one before the run")
    return models
