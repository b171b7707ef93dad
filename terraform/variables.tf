variable "project_id" {
  type        = string
  description = "The Google Cloud project that runs the template."
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a project ID: 6-30 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "region" {
  type        = string
  description = "Region of the Dataflow jobs, the Artifact Registry repository, the bucket and the dataset."
  default     = "us-central1"
  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must be a Google Cloud region such as us-central1 or europe-west4."
  }
}

variable "name" {
  type        = string
  description = "Prefix of every resource name (bucket, dataset, repository, service account, topics)."
  default     = "tfx-inference"
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,20}$", var.name))
    error_message = "name must be 3-21 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "bucket_name" {
  type        = string
  description = "Name of the bucket for models, inputs, outputs, temp, staging and the template spec. Default: PROJECT-NAME."
  default     = null
  validation {
    condition     = var.bucket_name == null || can(regex("^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be a valid bucket name: 3-63 lowercase letters, digits, dots, underscores or hyphens."
  }
}

variable "kms_key_name" {
  type        = string
  description = "Optional Cloud KMS key (projects/P/locations/L/keyRings/R/cryptoKeys/K) for CMEK on the bucket, dataset and repository."
  default     = null
  validation {
    condition     = var.kms_key_name == null || can(regex("^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$", var.kms_key_name))
    error_message = "kms_key_name must be a full Cloud KMS key name: projects/P/locations/L/keyRings/R/cryptoKeys/K."
  }
}

variable "temp_retention_days" {
  type        = number
  description = "Days after which objects under temp/ and staging/ are deleted."
  default     = 7
  validation {
    condition     = var.temp_retention_days >= 1 && var.temp_retention_days <= 365
    error_message = "temp_retention_days must be between 1 and 365."
  }
}

variable "dataset_id" {
  type        = string
  description = "BigQuery dataset for the keyed input, predictions and dead-letter tables."
  default     = "tfx_inference"
  validation {
    condition     = can(regex("^[A-Za-z_][A-Za-z0-9_]{0,1023}$", var.dataset_id))
    error_message = "dataset_id must be letters, digits and underscores, not starting with a digit."
  }
}

variable "deletion_protection" {
  type        = bool
  description = "Protect the BigQuery tables from `terraform destroy`. Set to false before tearing down."
  default     = true
}

variable "image_name" {
  type        = string
  description = "Image name inside the Artifact Registry repository; cloudbuild.yaml's _IMAGE_NAME must match."
  default     = "template"
}

variable "image_tag" {
  type        = string
  description = "Tag of the template image that the spec points at (what Cloud Build pushed, e.g. a commit SHA)."
  default     = "latest"
  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.image_tag))
    error_message = "image_tag must be a valid Docker tag."
  }
}

variable "enable_streaming" {
  type        = bool
  description = "Create the Pub/Sub input topic and subscription, the output topic and the dead-letter topic."
  default     = false
}

variable "subnetwork" {
  type        = string
  description = "Optional subnetwork (regions/REGION/subnetworks/NAME) for workers with private IPs only; it needs Private Google Access."
  default     = null
  validation {
    condition     = var.subnetwork == null || can(regex("^(https://www.googleapis.com/compute/v1/projects/[^/]+/)?regions/[^/]+/subnetworks/[^/]+$", var.subnetwork))
    error_message = "subnetwork must be regions/REGION/subnetworks/NAME or its full URL."
  }
}

variable "launch_job" {
  type        = bool
  description = "Launch a Dataflow job from the template with the job_* settings below (google-beta flex template job)."
  default     = false
}

variable "job_pattern" {
  type        = string
  description = "The --pattern of the launched job."
  default     = "keyed"
  validation {
    condition     = contains(["predict", "postprocess", "keyed", "multi_parallel", "multi_sequence"], var.job_pattern)
    error_message = "job_pattern must be one of predict, postprocess, keyed, multi_parallel, multi_sequence."
  }
}

variable "job_model_uris" {
  type        = list(string)
  description = "gs:// SavedModel directories of the launched job, in order. Default: the x5 demo model in the bucket."
  default     = []
  validation {
    condition     = alltrue([for uri in var.job_model_uris : startswith(uri, "gs://")])
    error_message = "job_model_uris must all be gs:// URIs."
  }
}

variable "job_input" {
  type        = string
  description = "gs:// file pattern of the launched job's input. Default: input/*.csv in the bucket."
  default     = null
}

variable "labels" {
  type        = map(string)
  description = "Labels on every resource that takes them."
  default     = {}
}
