# The schemas are the pipeline's own: schemas/bigquery/*.json, read by Terraform here and checked against
# the pipeline's rows by the tests.
resource "google_bigquery_dataset" "inference" {
  dataset_id                 = var.dataset_id
  location                   = var.region
  description                = "Keyed inputs, predictions and dead letters of the TFX RunInference template."
  delete_contents_on_destroy = false
  labels                     = local.labels

  dynamic "default_encryption_configuration" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      kms_key_name = default_encryption_configuration.value
    }
  }

  depends_on = [google_project_service.apis]
}

# input_query's result table lives here while it is read (the template's temp_dataset parameter), so that Beam
# never needs to create or delete datasets; leftovers of failed jobs expire after a day.
resource "google_bigquery_dataset" "temp" {
  dataset_id                  = "${var.dataset_id}_temp"
  location                    = var.region
  description                 = "Query results of the TFX RunInference template while a job reads them."
  default_table_expiration_ms = 86400000
  delete_contents_on_destroy  = true
  labels                      = local.labels

  dynamic "default_encryption_configuration" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      kms_key_name = default_encryption_configuration.value
    }
  }

  depends_on = [google_project_service.apis]
}

locals {
  tables = {
    keyed_input  = "Records to score: a key column and one column per model feature (the post's pattern 3)."
    predictions  = "One row per scored record: key, input features and each model's outputs."
    dead_letters = "Records that did not become predictions, with the raw input, the error and the stage."
  }
}

resource "google_bigquery_table" "tables" {
  #checkov:skip=CKV_GCP_121:deletion_protection is a variable (default true) so that a test deployment can be torn down.
  for_each            = local.tables
  dataset_id          = google_bigquery_dataset.inference.dataset_id
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
