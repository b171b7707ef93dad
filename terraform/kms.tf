# CMEK: with kms_key_name set, each service encrypts this deployment's data as its own service agent, and
# creating the bucket, datasets, repository, topics or a job's disks fails with 403 until that agent may use
# the key. Every resource that takes the key depends on these grants. Without a key, none of this exists.
data "google_project" "this" {
  count      = var.kms_key_name == null ? 0 : 1
  project_id = var.project_id
  depends_on = [google_project_service.apis]
}

# The Storage and BigQuery data sources ask the service for its agent, creating it if need be.
data "google_storage_project_service_account" "this" {
  count      = var.kms_key_name == null ? 0 : 1
  depends_on = [google_project_service.apis]
}

data "google_bigquery_default_service_account" "this" {
  count      = var.kms_key_name == null ? 0 : 1
  depends_on = [google_project_service.apis]
}

# Pub/Sub's and Artifact Registry's agents are created on their first use, which would be after the grant:
# generating the identity creates them now.
resource "google_project_service_identity" "agents" {
  provider   = google-beta
  for_each   = toset(var.kms_key_name == null ? [] : ["artifactregistry.googleapis.com", "pubsub.googleapis.com"])
  project    = var.project_id
  service    = each.value
  depends_on = [google_project_service.apis]
}

locals {
  # Dataflow's and Compute Engine's agents exist once their API is on; their names are fixed by the project number.
  cmek_agents = var.kms_key_name == null ? {} : {
    storage          = data.google_storage_project_service_account.this[0].email_address
    bigquery         = data.google_bigquery_default_service_account.this[0].email
    pubsub           = google_project_service_identity.agents["pubsub.googleapis.com"].email
    artifactregistry = google_project_service_identity.agents["artifactregistry.googleapis.com"].email
    dataflow         = "service-${data.google_project.this[0].number}@dataflow-service-producer-prod.iam.gserviceaccount.com"
    compute          = "service-${data.google_project.this[0].number}@compute-system.iam.gserviceaccount.com"
  }
}

resource "google_kms_crypto_key_iam_member" "service_agents" {
  for_each      = local.cmek_agents
  crypto_key_id = var.kms_key_name
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = "serviceAccount:${each.value}"
  depends_on    = [google_project_service.kms]
}
