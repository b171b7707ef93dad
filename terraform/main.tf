locals {
  bucket_name      = coalesce(var.bucket_name, "${var.project_id}-${var.name}")
  labels           = merge({ app = var.name, managed-by = "terraform" }, var.labels)
  repository_path  = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"
  image            = "${local.repository_path}/${var.image_name}:${var.image_tag}"
  template_object  = "templates/${var.name}.json"
  template_path    = "gs://${google_storage_bucket.data.name}/${local.template_object}"
  temp_location    = "gs://${google_storage_bucket.data.name}/temp"
  staging_location = "gs://${google_storage_bucket.data.name}/staging"
}

resource "google_project_service" "apis" {
  for_each = toset([
    "artifactregistry.googleapis.com",
    "bigquery.googleapis.com",
    "bigquerystorage.googleapis.com",
    "cloudbuild.googleapis.com",
    "compute.googleapis.com",
    "dataflow.googleapis.com",
    "iam.googleapis.com",
    "pubsub.googleapis.com",
    "storage.googleapis.com",
  ])
  service = each.value
  # Other workloads may use these APIs: destroying this deployment must not switch them off.
  disable_on_destroy = false
}
