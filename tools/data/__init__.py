"""Datasets: loaders for each source format, fetching, and time-ordered sequences."""

from tools.data.fetch import KNOWN_DATASETS, fetch_dataset, load_dataset, load_sequences
from tools.data.schema import DataError, Item, RawDataset
from tools.data.sequences import SequenceDataset, build_sequences

__all__ = [
    "KNOWN_DATASETS",
    "DataError",
    "Item",
    "RawDataset",
    "SequenceDataset",
    "build_sequences",
    "fetch_dataset",
    "load_dataset",
    "load_sequences",
]
