resource "google_artifact_registry_repository" "images" {
  repository_id = var.name
  location      = var.region
  format        = "DOCKER"
  description   = "Images of the TFX RunInference Flex Template (launcher and workers)."
  kms_key_name  = var.kms_key_name
  labels        = local.labels

  # Every build pushes a tag of its own ($BUILD_ID) and the spec names the image by digest: no tag is ever
  # moved, so the repository refuses to move one, and a tag found here names one build's image for good.
  docker_config {
    immutable_tags = true
  }

  depends_on = [google_project_service.apis, google_kms_crypto_key_iam_member.service_agents]
}
