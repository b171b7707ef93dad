"""Reading: files in shared byte ranges, BigQuery rows and Pub/Sub messages, as raw records."""
