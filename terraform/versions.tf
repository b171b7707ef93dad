terraform {
  required_version = ">= 1.5"

  required_providers {
    # ~> 8.7: the 8.x line is the current major, and 8.7.0 is the provider schema every resource and argument
    # here is checked against offline (tools/provider_schema.py). Minor releases add, never break; a new major
    # would need that check re-run against its schema first.
    google = {
      source  = "hashicorp/google"
      version = "~> 8.7"
    }
    # google_dataflow_flex_template_job is only in the beta provider; pinned in lockstep with google.
    google-beta = {
      source  = "hashicorp/google-beta"
      version = "~> 8.7"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}

provider "google-beta" {
  project = var.project_id
  region  = var.region
}
