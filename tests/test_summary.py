"""The local run's reconciliation: records read == rows written + dead letters, or main.py exits 1."""

from __future__ import annotations

import apache_beam as beam
import pytest

import main
from transforms import pipeline
from transforms.summary import RunSummary, summary_table

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


def test_the_summary_says_yes_only_when_every_record_is_accounted_for():
    assert RunSummary(10, 7, 3).reconciled and not RunSummary(10, 7, 2).reconciled
    assert not RunSummary(10, 8, 3).reconciled, "more out than in is a miscount too (a duplicate)"
    assert "reconciled               yes" in summary_table(RunSummary(10, 7, 3), "keyed", 1.0)
    streaming = summary_table(RunSummary(10, 7, 2), "keyed", 1.0, streaming=True)
    assert "not counted out            1" in streaming and "reconciled" not in streaming
