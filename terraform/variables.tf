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
    condition     = var.kms_key_name == null || can(regex("^projects/[a-z0-9.:-]+/locations/[a-z0-9-]+/keyRings/[A-Za-z0-9_-]+/cryptoKeys/[A-Za-z0-9_-]+$", var.kms_key_name))
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
    # Terraform's regex is RE2, which refuses repetitions above 1000: the length is checked apart.
    condition     = can(regex("^[A-Za-z_][A-Za-z0-9_]*$", var.dataset_id)) && length(var.dataset_id) <= 1024
    error_message = "dataset_id must be 1-1024 letters, digits and underscores, not starting with a digit."
  }
}

variable "deletion_protection" {
  type        = bool
  description = "Protect the BigQuery tables from `terraform destroy`. Set to false before tearing down."
  default     = true
}

variable "image_name" {
  type        = string
  description = "Image name inside the Artifact Registry repository; the build_command output passes it to cloudbuild.yaml as _IMAGE_NAME."
  default     = "template"
  validation {
    condition     = can(regex("^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$", var.image_name))
    error_message = "image_name must be a Docker repository path: lowercase letters and digits, parts joined by '.', '_', '-' or '/'."
  }
}

variable "image_digest" {
  type        = string
  description = "Digest (sha256:...) of the template image the build pushed; the streaming job launches only when the template spec names this image by digest for the launcher and the workers. By digest, never by a tag: a worker that autoscaling adds later runs the image the job graph was built with. Null until the first build."
  default     = null
  validation {
    condition     = var.image_digest == null || can(regex("^sha256:[0-9a-f]{64}$", var.image_digest))
    error_message = "image_digest must be an image digest, sha256: and 64 lowercase hex digits; a tag such as latest can move to another image."
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
    condition     = var.subnetwork == null || can(regex("^(https://www.googleapis.com/compute/v1/projects/[a-z0-9.:-]+/)?regions/[a-z0-9-]+/subnetworks/[a-z0-9-]+$", var.subnetwork))
    error_message = "subnetwork must be regions/REGION/subnetworks/NAME or its full URL."
  }
}

variable "launch_streaming_job" {
  type        = bool
  description = "Launch the streaming job from Terraform (google-beta flex template job): the job_* settings below, reading the input subscription and publishing to the output and dead-letter topics. Needs enable_streaming and image_digest. Streaming only: a finished batch job drops out of Terraform's state and the next apply would run it again, so batch runs are launched with the run_command output."
  default     = false
}

variable "job_pattern" {
  type        = string
  description = "The --pattern of the streaming job."
  default     = "keyed"
  validation {
    condition     = contains(["predict", "postprocess", "keyed", "multi_parallel", "multi_sequence"], var.job_pattern)
    error_message = "job_pattern must be one of predict, postprocess, keyed, multi_parallel, multi_sequence."
  }
}

variable "job_model_uris" {
  type        = list(string)
  description = "gs:// SavedModel directories (or vertex:// endpoints, listed in vertex_endpoints too) of the streaming job, in order. Default: the x5 demo model in the bucket."
  default     = []
  validation {
    condition     = alltrue([for uri in var.job_model_uris : startswith(uri, "gs://") || startswith(uri, "vertex://")])
    error_message = "job_model_uris must all be gs:// URIs or vertex://projects/PROJECT/locations/LOCATION/endpoints/ENDPOINT."
  }
}

variable "vertex_endpoints" {
  type        = list(string)
  description = "Vertex AI endpoints (projects/PROJECT/locations/LOCATION/endpoints/ENDPOINT) the jobs call as models (model_uris vertex://...): the worker service account, which the launcher runs as too, is granted roles/aiplatform.user on each, to read it at launch and call it."
  default     = []
  validation {
    condition     = alltrue([for name in var.vertex_endpoints : can(regex("^projects/[a-z0-9][a-z0-9.:-]*/locations/[a-z0-9-]+/endpoints/[A-Za-z0-9_-]+$", name))])
    error_message = "vertex_endpoints must be endpoint resource names: projects/PROJECT/locations/LOCATION/endpoints/ENDPOINT."
  }
}

variable "labels" {
  type        = map(string)
  description = "Labels on every resource that takes them."
  default     = {}
}
