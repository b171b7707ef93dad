# The workers' identity, with only what a job needs: run as a Dataflow worker, read models and inputs and
# write outputs in this bucket, write this deployment's datasets, read the image, use this deployment's topics, and
# call the Vertex AI endpoints of var.vertex_endpoints.
resource "google_service_account" "worker" {
  account_id   = "${var.name}-worker"
  display_name = "TFX RunInference Dataflow workers"
  depends_on   = [google_project_service.apis]
}

resource "google_project_iam_member" "worker" {
  for_each = toset([
    "roles/dataflow.worker",
    # Load jobs (FILE_LOADS) and Storage Read API sessions run as project-level BigQuery jobs.
    "roles/bigquery.jobUser",
    "roles/bigquery.readSessionUser",
  ])
  project = var.project_id
  role    = each.value
  member  = google_service_account.worker.member
}

resource "google_storage_bucket_iam_member" "worker" {
  bucket = google_storage_bucket.data.name
  role   = "roles/storage.objectUser"
  member = google_service_account.worker.member
}

resource "google_bigquery_dataset_iam_member" "worker" {
  for_each   = google_bigquery_dataset.datasets
  dataset_id = each.value.dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = google_service_account.worker.member
}

resource "google_artifact_registry_repository_iam_member" "worker" {
  repository = google_artifact_registry_repository.images.name
  location   = google_artifact_registry_repository.images.location
  role       = "roles/artifactregistry.reader"
  member     = google_service_account.worker.member
}

resource "google_pubsub_subscription_iam_member" "worker" {
  for_each     = google_pubsub_subscription.input
  subscription = each.value.name
  role         = "roles/pubsub.subscriber"
  member       = google_service_account.worker.member
}

resource "google_pubsub_topic_iam_member" "worker" {
  for_each = { for role, topic in google_pubsub_topic.streaming : role => topic if role != "input" }
  topic    = each.value.name
  role     = "roles/pubsub.publisher"
  member   = google_service_account.worker.member
}

# Remote inference: each Vertex AI endpoint the jobs call, read at launch and called by the workers. Granted on the
# endpoint itself, not the project: roles/aiplatform.user on a project would let the workers run training jobs too.
resource "google_vertex_ai_endpoint_iam_member" "worker" {
  provider   = google-beta
  for_each   = toset(var.vertex_endpoints)
  project    = split("/", each.value)[1]
  location   = split("/", each.value)[3]
  endpoint   = split("/", each.value)[5]
  role       = "roles/aiplatform.user"
  member     = google_service_account.worker.member
  depends_on = [google_project_service.aiplatform]
}
