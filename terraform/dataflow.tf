# Optional: the streaming job, launched from the template, on private worker IPs when a subnetwork is given.
# Only a streaming job: it runs until drained, so it stays in Terraform's state. A batch job drops out of the
# state once it finishes and every later apply would run the inference again; batch runs use `run_command`.

# The template spec is the build's to write; Terraform reads it back and launches only if it starts the
# launcher and the workers with image_digest's image, so the job runs the image this configuration names.
data "google_storage_bucket_object_content" "template_spec" {
  count  = var.launch_streaming_job ? 1 : 0
  bucket = google_storage_bucket.data.name
  name   = local.template_object
}

locals {
  template_spec = try(jsondecode(one(data.google_storage_bucket_object_content.template_spec[*].content)), null)
  spec_images   = try([local.template_spec.image, local.template_spec.defaultEnvironment.sdkContainerImage], [])
}

resource "google_dataflow_flex_template_job" "streaming" {
  provider                = google-beta
  count                   = var.launch_streaming_job ? 1 : 0
  name                    = "${var.name}-${replace(var.job_pattern, "_", "-")}-streaming"
  region                  = var.region
  container_spec_gcs_path = local.template_path
  service_account_email   = google_service_account.worker.email
  temp_location           = local.temp_location
  staging_location        = local.staging_location
  subnetwork              = var.subnetwork
  ip_configuration        = var.subnetwork == null ? "WORKER_IP_PUBLIC" : "WORKER_IP_PRIVATE"
  kms_key_name            = var.kms_key_name
  # The workers' image named by the launch too, not left to the spec's defaultEnvironment alone (nothing public
  # says the service passes it on; Google's own samples pass sdk_container_image at launch). The precondition
  # below holds the spec to the same image.
  sdk_container_image = local.image
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
    precondition {
      condition     = length(local.spec_images) == 2 && alltrue([for image in local.spec_images : image == local.image])
      error_message = "The template spec at ${local.template_path} does not start the launcher and the workers with ${coalesce(local.image, "image_digest's image")}: run build_command for that image, or set image_digest to the digest the last build printed."
    }
  }

  depends_on = [
    google_project_iam_member.worker,
    google_storage_bucket_iam_member.worker,
    google_artifact_registry_repository_iam_member.worker,
    google_pubsub_subscription_iam_member.worker,
    google_pubsub_topic_iam_member.worker,
    google_kms_crypto_key_iam_member.service_agents,
  ]
}
