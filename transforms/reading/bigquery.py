"""BigQuery reading: the rows of a table or a query's result, with the Storage Read API."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.io.gcp.bigquery import BigQueryQueryPriority, ReadFromBigQuery
from apache_beam.io.gcp.bigquery_tools import parse_table_reference
from apache_beam.io.gcp.internal.clients import bigquery as bigquery_api
from apache_beam.options.pipeline_options import GoogleCloudOptions

from transforms.config import InferenceConfig


def _dataset(spec: str, project: str | None) -> bigquery_api.DatasetReference:
    dataset_project, _, dataset = spec.rpartition(":")
    return bigquery_api.DatasetReference(projectId=dataset_project or project, datasetId=dataset)


class ReadBigQueryRows(beam.PTransform):
    """Rows of --input_table or --input_query, each as `(source, row)`: a dict of column name to value.

    The Storage Read API (DIRECT_READ) reads the table itself, or the query's result table in --temp_dataset.
    A temporary dataset is always named, so Beam never creates or deletes datasets of its own.
    """

    def __init__(self, config: InferenceConfig):
        super().__init__()
        self._config = config

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        project = pbegin.pipeline.options.view_as(GoogleCloudOptions).project
        if self._config.input_query:
            source = "query"
            read = ReadFromBigQuery(
                query=self._config.input_query,
                use_standard_sql=True,
                method=ReadFromBigQuery.Method.DIRECT_READ,
                temp_dataset=_dataset(self._config.temp_dataset, project),
                query_priority=BigQueryQueryPriority.INTERACTIVE,
            )
        else:
            source = self._config.input_table
            table = parse_table_reference(source, project=project)
            read = ReadFromBigQuery(
                table=table,
                method=ReadFromBigQuery.Method.DIRECT_READ,
                temp_dataset=bigquery_api.DatasetReference(projectId=table.projectId, datasetId=table.datasetId),
            )
        return pbegin | "ReadBigQuery" >> read | "WithSource" >> beam.Map(lambda row: (source, row))
