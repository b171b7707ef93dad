# Optional: a job launched from the template, on private worker IPs when a subnetwork is given. The spec at
# local.template_path is Cloud Build's to write (its template-spec step): apply with launch_job after a build.
resource "google_dataflow_flex_template_job" "inference" {
  provider                = google-beta
  count                   = var.launch_job ? 1 : 0
  name                    = "${var.name}-${replace(var.job_pattern, "_", "-")}"
  region                  = var.region
  container_spec_gcs_path = local.template_path
  service_account_email   = google_service_account.worker.email
  temp_location           = local.temp_location
  staging_location        = local.staging_location
  subnetwork              = var.subnetwork
  ip_configuration        = var.subnetwork == null ? "WORKER_IP_PUBLIC" : "WORKER_IP_PRIVATE"
  kms_key_name            = var.kms_key_name
  on_delete               = "cancel"
  labels                  = local.labels

  parameters = {
    pattern    = var.job_pattern
    model_uris = join(",", length(var.job_model_uris) > 0 ? var.job_model_uris : ["gs://${google_storage_bucket.data.name}/models/multiply_by_5"])
    input      = coalesce(var.job_input, "gs://${google_storage_bucket.data.name}/input/*.csv")
    output     = "gs://${google_storage_bucket.data.name}/output/${var.job_pattern}"
  }

  depends_on = [
    google_project_iam_member.worker,
    google_storage_bucket_iam_member.worker,
    google_artifact_registry_repository_iam_member.worker,
  ]
}
