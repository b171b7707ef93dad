"""Writing: rows and dead letters encoded once, then to files, BigQuery and Pub/Sub."""
