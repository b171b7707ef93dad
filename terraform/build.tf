# Cloud Build's identity, with exactly what cloudbuild.yaml does: read the source and write the template spec
# and the smoke run's files in this bucket, push to this repository, write its logs (CLOUD_LOGGING_ONLY), and
# launch and watch the smoke run as the workers' account. A new project may otherwise build as the Compute
# Engine default account, which can have no roles at all; the `build_command` output passes this one.
resource "google_service_account" "build" {
  account_id   = "${var.name}-build"
  display_name = "TFX RunInference Cloud Build"
  depends_on   = [google_project_service.apis]
}

resource "google_project_iam_member" "build_logs" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = google_service_account.build.member
}

# Launch the smoke run and read its state.
resource "google_project_iam_member" "build_launches_jobs" {
  #checkov:skip=CKV_GCP_49:Dataflow jobs have no IAM of their own, so dataflow.developer exists only on the project; acting as an account still needs serviceAccountUser, granted on the workers' account alone.
  project = var.project_id
  role    = "roles/dataflow.developer"
  member  = google_service_account.build.member
}

resource "google_storage_bucket_iam_member" "build" {
  bucket = google_storage_bucket.data.name
  role   = "roles/storage.objectUser"
  member = google_service_account.build.member
}

resource "google_artifact_registry_repository_iam_member" "build" {
  repository = google_artifact_registry_repository.images.name
  location   = google_artifact_registry_repository.images.location
  role       = "roles/artifactregistry.writer"
  member     = google_service_account.build.member
}

# The smoke run's workers run as the workers' account; the build may act as that account and no other.
resource "google_service_account_iam_member" "build_acts_as_worker" {
  service_account_id = google_service_account.worker.name
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.build.member
}
