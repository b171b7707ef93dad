resource "google_artifact_registry_repository" "images" {
  repository_id = var.name
  location      = var.region
  format        = "DOCKER"
  description   = "Images of the TFX RunInference Flex Template (launcher and workers)."
  kms_key_name  = var.kms_key_name
  labels        = local.labels

  docker_config {
    immutable_tags = false
  }

  depends_on = [google_project_service.apis, google_kms_crypto_key_iam_member.service_agents]
}
