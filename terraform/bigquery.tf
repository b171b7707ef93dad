# The schemas are the pipeline's own: schemas/bigquery/*.json, read by Terraform here and checked against
# the pipeline's rows by the tests.
locals {
  datasets = {
    inference = {
      dataset_id       = var.dataset_id
      description      = "Keyed inputs, predictions and dead letters of the TFX RunInference template."
      table_expiry_ms  = null
      delete_on_remove = false
    }
    # input_query's result table lives here while it is read (the template's temp_dataset parameter), so that
    # Beam never creates or deletes datasets; leftovers of failed jobs expire after a day.
    temp = {
      dataset_id       = "${var.dataset_id}_temp"
      description      = "Query results of the TFX RunInference template while a job reads them."
      table_expiry_ms  = 86400000
      delete_on_remove = true
    }
  }
  tables = {
    keyed_input  = "Records to score: a key column and one column per model feature (the post's pattern 3)."
    predictions  = "One row per scored record: key, input features and each model's outputs."
    dead_letters = "Records that did not become predictions, with the raw input, the error and the stage."
  }
}

resource "google_bigquery_dataset" "datasets" {
  for_each                    = local.datasets
  dataset_id                  = each.value.dataset_id
  location                    = var.region
  description                 = each.value.description
  default_table_expiration_ms = each.value.table_expiry_ms
  delete_contents_on_destroy  = each.value.delete_on_remove
  labels                      = local.labels

  dynamic "default_encryption_configuration" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      kms_key_name = default_encryption_configuration.value
    }
  }

  depends_on = [google_project_service.apis, google_kms_crypto_key_iam_member.service_agents]
}

resource "google_bigquery_table" "tables" {
  #checkov:skip=CKV_GCP_121:deletion_protection is a variable (default true) so that a test deployment can be torn down.
  for_each            = local.tables
  dataset_id          = google_bigquery_dataset.datasets["inference"].dataset_id
  table_id            = each.key
  description         = each.value
  schema              = file("${path.module}/../schemas/bigquery/${each.key}.json")
  deletion_protection = var.deletion_protection
  labels              = local.labels

  dynamic "encryption_configuration" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      kms_key_name = encryption_configuration.value
    }
  }
}
