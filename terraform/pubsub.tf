# Streaming: records in through a subscription, prediction rows and dead letters out through topics.
locals {
  topics = var.enable_streaming ? {
    input       = "${var.name}-input"
    output      = "${var.name}-predictions"
    dead_letter = "${var.name}-dead-letters"
  } : {}
}

resource "google_pubsub_topic" "streaming" {
  for_each     = local.topics
  name         = each.value
  kms_key_name = var.kms_key_name
  labels       = local.labels
  depends_on   = [google_project_service.apis, google_kms_crypto_key_iam_member.service_agents]
}

resource "google_pubsub_subscription" "input" {
  for_each                   = { for role, topic in google_pubsub_topic.streaming : role => topic if role == "input" }
  name                       = "${var.name}-input"
  topic                      = each.value.id
  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"
  labels                     = local.labels

  expiration_policy {
    ttl = ""
  }
}
