# Optional: the streaming job, launched from the template, on private worker IPs when a subnetwork is given.
# Only a streaming job: it runs until drained, so it stays in Terraform's state. A batch job drops out of the
# state once it finishes and every later apply would run the inference again; batch runs use `run_command`.
resource "google_dataflow_flex_template_job" "streaming" {
  provider                = google-beta
  count                   = var.launch_streaming_job ? 1 : 0
  name                    = "${var.name}-${replace(var.job_pattern, "_", "-")}-streaming"
  region                  = var.region
  container_spec_gcs_path = local.template_path
  service_account_email   = google_service_account.worker.email
  temp_location           = local.temp_location
  staging_location        = local.staging_location
  sdk_container_image     = local.image
  subnetwork              = var.subnetwork
  ip_configuration        = var.subnetwork == null ? "WORKER_IP_PUBLIC" : "WORKER_IP_PRIVATE"
  kms_key_name            = var.kms_key_name
  # Drain, not cancel: the messages already pulled from the subscription are scored and published first.
  on_delete = "drain"
  labels    = local.labels

  parameters = {
    pattern            = var.job_pattern
    model_uris         = join(",", length(var.job_model_uris) > 0 ? var.job_model_uris : ["gs://${google_storage_bucket.data.name}/models/multiply_by_5"])
    input_subscription = one([for s in google_pubsub_subscription.input : s.id])
    output_topic       = one([for role, t in google_pubsub_topic.streaming : t.id if role == "output"])
    dead_letter_topic  = one([for role, t in google_pubsub_topic.streaming : t.id if role == "dead_letter"])
  }

  lifecycle {
    precondition {
      condition     = var.enable_streaming
      error_message = "launch_streaming_job reads the subscription that enable_streaming creates: set enable_streaming = true too."
    }
    precondition {
      condition     = var.image_digest != null
      error_message = "launch_streaming_job needs image_digest: the digest the build printed (sha256:...), so that every worker runs that image."
    }
  }

  depends_on = [
    google_storage_bucket_object.template_spec,
    google_project_iam_member.worker,
    google_storage_bucket_iam_member.worker,
    google_artifact_registry_repository_iam_member.worker,
    google_pubsub_subscription_iam_member.worker,
    google_pubsub_topic_iam_member.worker,
    google_kms_crypto_key_iam_member.service_agents,
  ]
}
