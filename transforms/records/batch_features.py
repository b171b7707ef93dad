"""A batch's features kept as its parser's columns: a record's are made Python values only when something reads them.

A heavy record's 256 floats made Python numbers cost 3.4 us, a third of parsing it, and a job whose rows carry only
the key and whose model is fed the record's Example as read (`--row_input=none`) never reads them. Rows that echo the
input, named-tensor models, endpoints, routes and multi_sequence read them as before: the first read converts the
whole batch, a column at a time, as the parser used to. A row that echoes them reads them as rows are written:
numbers stay NumPy values in the column's own dtype, for the row's JSON to write a float32 in its shortest text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any


class BatchFeatures:
    """The features of a batch of records, one column per feature, converted to Python values at the first read.

    `convert` turns one column into each record's value of that feature (a number, text, or a list of them);
    `convert_for_rows` into the value a row echoes (NumPy numbers in the column's dtype), by default the same.
    """

    __slots__ = ("_columns", "_convert", "_convert_for_rows", "_names", "_row_values", "_rows")

    def __init__(
        self,
        names: Sequence[str],
        columns: Sequence[Any],
        convert: Callable[[Any], list],
        convert_for_rows: Callable[[Any], list] | None = None,
    ):
        self._names = tuple(names)
        self._columns = columns
        self._convert = convert
        self._convert_for_rows = convert_for_rows or convert
        self._rows: list[tuple] | None = None
        self._row_values: list[tuple] | None = None

    def record(self, position: int) -> dict[str, Any]:
        """The features of the record at `position`, as a dict of Python values."""
        if self._rows is None:
            self._rows = list(zip(*[self._convert(column) for column in self._columns], strict=True))
        return dict(zip(self._names, self._rows[position], strict=True))

    def for_row(self, position: int) -> dict[str, Any]:
        """The features of the record at `position` as its row echoes them."""
        if self._row_values is None:
            self._row_values = list(zip(*[self._convert_for_rows(column) for column in self._columns], strict=True))
        return dict(zip(self._names, self._row_values[position], strict=True))

    def records(self, count: int) -> list[RecordFeatures]:
        """A lazy mapping per record of the batch (there are `count`)."""
        return [RecordFeatures(self, position) for position in range(count)]


class RecordFeatures(Mapping):
    """One record's features, read from its batch's columns the first time anything looks at them.

    It reads as a dict does. Pickled (where a runner encodes a Record) it becomes a dict, KeptFeatures, without its
    batch, that still echoes in its columns' dtypes: a row's bytes do not depend on whether the record crossed a
    shuffle (a routed job's do).
    """

    __slots__ = ("_batch", "_features", "_position")

    def __init__(self, batch: BatchFeatures, position: int):
        self._batch = batch
        self._position = position
        self._features: dict[str, Any] | None = None

    def _values(self) -> dict[str, Any]:
        if self._features is None:
            self._features = self._batch.record(self._position)
        return self._features

    def __getitem__(self, name: str) -> Any:
        return self._values()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values())

    def __len__(self) -> int:
        return len(self._values())

    def __repr__(self) -> str:
        return repr(self._values())

    def __reduce__(self):
        return KeptFeatures, (self._values(), self.for_row())

    def for_row(self) -> dict[str, Any]:
        """The features as a row echoes them: numbers as NumPy values of the column's dtype, for orjson to write."""
        return self._batch.for_row(self._position)


class KeptFeatures(dict):
    """A record's features as a pickled RecordFeatures comes back: the dict of Python values, and beside it the
    values its row echoes."""

    def __init__(self, values: Mapping[str, Any], row: Mapping[str, Any]):
        super().__init__(values)
        self._row = row

    def __reduce__(self):
        return KeptFeatures, (dict(self), self._row)

    def for_row(self) -> Mapping[str, Any]:
        return self._row


def row_features(features: Mapping[str, Any]) -> Mapping[str, Any]:
    """A record's features as its row echoes them: parsed ones in their columns' dtypes, any other dict as it is."""
    return features.for_row() if isinstance(features, (RecordFeatures, KeptFeatures)) else features
