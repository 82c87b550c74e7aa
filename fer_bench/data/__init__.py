"""Datasets (`--dataset NAME[:ARG]`) loaded into compact uint8 tensors with canonical labels."""

from .dataset import SPLITS, FERDataset, Split
from .sources import DATASETS, load_dataset, parse_options

__all__ = ["DATASETS", "SPLITS", "FERDataset", "Split", "load_dataset", "parse_options"]
