"""Datasets (`--dataset NAME[:ARG]`) loaded into compact uint8 tensors with canonical labels."""

from .dataset import SPLITS, FERDataset, Split
from .options import parse_options
from .sources import DATASETS, load_dataset

__all__ = ["DATASETS", "SPLITS", "FERDataset", "Split", "load_dataset", "parse_options"]
