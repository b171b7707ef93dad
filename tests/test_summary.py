"""The local run's summary: records read == rows written + dead letters, or main.py exits 1; and the model table
counts each model's predictions as the rows written are counted."""

from __future__ import annotations

import re

import apache_beam as beam
import pytest

import main
from transforms import counters, pipeline
from transforms.summary import ModelMetrics, RunSummary, summary_table

pytestmark = pytest.mark.slow


class LosesOneRecord(beam.PTransform):
    """The real pattern, with one result silently dropped after it: the loss reconciliation exists to catch."""

    def __init__(self, pattern: beam.PTransform, lost_key: str):
        super().__init__()
        self._pattern = pattern
        self._lost_key = lost_key

    def expand(self, records):
        results, dead_letters = records | "Pattern" >> self._pattern
        lost_key = self._lost_key
        kept = results | "Lose" >> beam.Map(
            lambda batch: batch.take([i for i, record in enumerate(batch.records) if record.key != lost_key])
        )
        return kept, dead_letters


def test_a_local_run_whose_counts_do_not_reconcile_exits_1(monkeypatch, capsys, demo_models, demo_data, tmp_path):
    real = pipeline.pattern_transform
    monkeypatch.setattr(
        pipeline,
        "pattern_transform",
        lambda config, chain, signatures: LosesOneRecord(real(config, chain, signatures), "device-042"),
    )
    output = tmp_path / "out" / "rows"
    code = main.main(
        [
            "--pattern=keyed",
            f"--model_uris={demo_models['multiply_by_5']}",
            f"--input={demo_data}/numbers.csv",
            f"--output={output}",
        ]
    )
    summary = capsys.readouterr().out
    assert code == 1, summary
    assert "records read             100" in summary and "rows written              99" in summary
    assert "reconciled                NO: records read != rows written + dead letters" in summary
    assert re.search(r"^  multiply_by_5 +99 ", summary, re.M), "the model table counts the rows, not the model's 100"


def test_the_summary_says_yes_only_when_every_record_is_accounted_for():
    assert RunSummary(10, 7, 3).reconciled and not RunSummary(10, 7, 2).reconciled
    assert not RunSummary(10, 8, 3).reconciled, "more out than in is a miscount too (a duplicate)"
    assert "reconciled               yes" in summary_table(RunSummary(10, 7, 3), "keyed", 1.0)
    streaming = summary_table(RunSummary(10, 7, 2), "keyed", 1.0, streaming=True)
    assert "not counted out            1" in streaming and "reconciled" not in streaming


def test_the_model_table_counts_each_models_predictions_written_by_version():
    metrics = ModelMetrics(batches=3, versions={"3": {"refusals": 1}})
    summary = RunSummary(
        300,
        297,
        3,
        models={"fraud": metrics, "plain": ModelMetrics(batches=3)},
        predictions={"fraud": {"10": 180, "9": 117}, "plain": {"unversioned": 297}},
    )
    table = summary_table(summary, "multi_parallel", 1.0, streaming=True, counted_live=True)
    assert re.search(r"^  fraud +297 +3 ", table, re.M) and re.search(r"^  plain +297 +3 ", table, re.M), table
    assert "\n  fraud versions served: 9 (117), 10 (180); refused: 3" in table, "in version order"
    assert "plain versions" not in table, "a plain SavedModel directory has no versions to list"


def test_predictions_written_are_read_back_by_model_and_version():
    names = {
        counters.predictions_written_counter_name("fraud.v2", "1732700000"): 7,
        counters.predictions_written_counter_name("fraud.v2", None): 2,
        counters.predictions_written_counter_name("m", "1"): 1,
        counters.ROWS_WRITTEN: 10,
    }
    assert counters.predictions_written(names) == {"fraud.v2": {"1732700000": 7, "unversioned": 2}, "m": {"1": 1}}
