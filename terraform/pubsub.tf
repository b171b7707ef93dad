# Streaming: records in through a subscription, prediction rows and dead letters out through topics.
locals {
  streaming = var.enable_streaming ? toset(["enabled"]) : toset([])
}

resource "google_pubsub_topic" "input" {
  for_each     = local.streaming
  name         = "${var.name}-input"
  kms_key_name = var.kms_key_name
  labels       = local.labels
  depends_on   = [google_project_service.apis]
}

resource "google_pubsub_subscription" "input" {
  for_each                   = local.streaming
  name                       = "${var.name}-input"
  topic                      = google_pubsub_topic.input[each.key].id
  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"
  labels                     = local.labels

  expiration_policy {
    ttl = ""
  }
}

resource "google_pubsub_topic" "output" {
  for_each     = local.streaming
  name         = "${var.name}-predictions"
  kms_key_name = var.kms_key_name
  labels       = local.labels
  depends_on   = [google_project_service.apis]
}

resource "google_pubsub_topic" "dead_letter" {
  for_each     = local.streaming
  name         = "${var.name}-dead-letters"
  kms_key_name = var.kms_key_name
  labels       = local.labels
  depends_on   = [google_project_service.apis]
}
