locals {
  bucket_name     = coalesce(var.bucket_name, "${var.project_id}-${var.name}")
  labels          = merge({ app = var.name, managed-by = "terraform" }, var.labels)
  repository_path = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"
  # By digest, never by tag: every worker, including one that autoscaling adds hours later, runs the image
  # the job graph was built with. Null until the first build has printed its digest.
  image            = var.image_digest == null ? null : "${local.repository_path}/${var.image_name}@${var.image_digest}"
  template_object  = "templates/${var.name}.json"
  template_path    = "gs://${google_storage_bucket.data.name}/${local.template_object}"
  temp_location    = "gs://${google_storage_bucket.data.name}/temp"
  staging_location = "gs://${google_storage_bucket.data.name}/staging"
}

# Every resource depends on the API it calls (directly or through a resource that does): in a new project
# IAM, Dataflow, Artifact Registry, ... are off, and an apply that races their enablement fails.
# Service Usage, which enables them, is on in every project. Cloud Resource Manager carries project-level IAM.
resource "google_project_service" "apis" {
  for_each = toset([
    "artifactregistry.googleapis.com",
    "bigquery.googleapis.com",
    "bigquerystorage.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "compute.googleapis.com",
    "dataflow.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "pubsub.googleapis.com",
    "storage.googleapis.com",
  ])
  service = each.value
  # Other workloads may use these APIs: destroying this deployment must not switch them off.
  disable_on_destroy = false
}

# Vertex AI only with endpoints to call: the workers' requests are counted against this project, which must enable it.
resource "google_project_service" "aiplatform" {
  count              = length(var.vertex_endpoints) > 0 ? 1 : 0
  service            = "aiplatform.googleapis.com"
  disable_on_destroy = false
}

# Cloud KMS only with a key: the service agents' grants on it (kms.tf) go through it.
resource "google_project_service" "kms" {
  count              = var.kms_key_name == null ? 0 : 1
  service            = "cloudkms.googleapis.com"
  disable_on_destroy = false
}
