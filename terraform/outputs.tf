output "bucket" {
  description = "The bucket for models, inputs, outputs, temp, staging and the template spec."
  value       = google_storage_bucket.data.name
}

output "template_spec_path" {
  description = "gs:// path of the Flex Template spec."
  value       = local.template_path
}

output "image_repository" {
  description = "Artifact Registry path that cloudbuild.yaml pushes the image to (_REGION-docker.pkg.dev/PROJECT/_REPOSITORY)."
  value       = local.repository_path
}

output "image" {
  description = "The template image by digest, as the streaming job names it (null until image_digest is set)."
  value       = local.image
}

output "service_account_email" {
  description = "The workers' service account."
  value       = google_service_account.worker.email
}

output "build_service_account_email" {
  description = "Cloud Build's service account (build_command passes it)."
  value       = google_service_account.build.email
}

output "tables" {
  description = "BigQuery table ids (PROJECT:DATASET.TABLE) by role."
  value       = { for name, table in google_bigquery_table.tables : name => "${var.project_id}:${table.dataset_id}.${table.table_id}" }
}

output "temp_dataset" {
  description = "PROJECT:DATASET to pass as temp_dataset with input_query."
  value       = "${var.project_id}:${google_bigquery_dataset.datasets["temp"].dataset_id}"
}

output "pubsub" {
  description = "Streaming topics and subscription (empty unless enable_streaming)."
  value = {
    input_subscription = [for s in google_pubsub_subscription.input : s.id]
    output_topic       = [for role, t in google_pubsub_topic.streaming : t.id if role == "output"]
    dead_letter_topic  = [for role, t in google_pubsub_topic.streaming : t.id if role == "dead_letter"]
  }
}

# The two commands are shell scripts, rendered from the templates next to this file: run them as printed,
# `terraform output -raw run_command | bash`, or paste them. Every value in them is checked by its variable
# to characters that need no quoting.
locals {
  command_values = {
    project                = var.project_id
    region                 = var.region
    name                   = var.name
    bucket                 = google_storage_bucket.data.name
    repository             = google_artifact_registry_repository.images.repository_id
    image_name             = var.image_name
    template_path          = local.template_path
    temp_location          = local.temp_location
    staging_location       = local.staging_location
    worker_service_account = google_service_account.worker.email
    build_service_account  = google_service_account.build.email
    kms_key_name           = var.kms_key_name
    subnetwork             = var.subnetwork
  }
}

output "build_command" {
  description = "The Cloud Build run, from the repository root: as the build service account, with this deployment's bucket, repository and names; SMOKE_TEST=true in its environment adds the smoke run on Dataflow."
  value       = templatefile("${path.module}/build_command.sh.tftpl", local.command_values)
}

output "run_command" {
  description = "A batch run of the keyed pattern on the demo model and data uploaded to the bucket, a new job name each time."
  value       = templatefile("${path.module}/run_command.sh.tftpl", local.command_values)
}
