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
  description = "The image the template spec points at."
  value       = local.image
}

output "service_account_email" {
  description = "The workers' service account."
  value       = google_service_account.worker.email
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

output "run_command" {
  description = "A ready command that runs the keyed pattern on the demo model and data uploaded to the bucket."
  value = join(" ", [
    "gcloud dataflow flex-template run \"${var.name}-keyed-$(date +%Y%m%d-%H%M%S)\"",
    "--project=${var.project_id} --region=${var.region}",
    "--template-file-gcs-location=${local.template_path}",
    "--service-account-email=${google_service_account.worker.email}",
    "--temp-location=${local.temp_location} --staging-location=${local.staging_location}",
    var.subnetwork == null ? "" : "--subnetwork=${var.subnetwork} --disable-public-ips",
    "--parameters=pattern=keyed",
    "--parameters=model_uris=gs://${google_storage_bucket.data.name}/models/multiply_by_5",
    "--parameters=input=gs://${google_storage_bucket.data.name}/input/numbers.csv",
    "--parameters=output=gs://${google_storage_bucket.data.name}/output/keyed",
  ])
}
