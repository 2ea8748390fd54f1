"""A read-only sequence whose rows are made when asked for (catalogue records, history views),
indexed as a list is: negative positions count from the end, a slice gives a list."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar, overload

T = TypeVar("T")


class Rows(Sequence[T]):
    def _at(self, row: int) -> T:
        """Row `row`, 0 <= row < len(self)."""
        raise NotImplementedError

    @overload
    def __getitem__(self, row: int) -> T: ...
    @overload
    def __getitem__(self, row: slice) -> list[T]: ...
    def __getitem__(self, row: int | slice) -> T | list[T]:
        if isinstance(row, slice):
            return [self._at(i) for i in range(*row.indices(len(self)))]
        at = row + len(self) if row < 0 else row
        if not 0 <= at < len(self):
            raise IndexError(f"row {row} out of range ({len(self)} rows)")
        return self._at(at)

    def __iter__(self) -> Iterator[T]:
        return (self._at(i) for i in range(len(self)))
