"""Source label codes -> canonical class indices by class NAME (datasets order them differently)."""

from __future__ import annotations

import numpy as np

from ..classes import canonical_name

# Each dataset's own order, as its files number classes (see docs/datasets.md).
FER2013_ORDER = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
FERPLUS_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear",
                   "contempt", "unknown", "NF")
RAFDB_ORDER = {1: "surprise", 2: "fear", 3: "disgust", 4: "happy", 5: "sad", 6: "angry",
               7: "neutral"}
AFFECTNET_ORDER = {0: "neutral", 1: "happy", 2: "sad", 3: "surprise", 4: "fear", 5: "disgust",
                   6: "angry", 7: "contempt"}
AFFECTNET_DROPPED = {8: "none", 9: "uncertain", 10: "no-face"}


def code_table(order: dict[int, str] | tuple[str, ...], classes: tuple[str, ...]) -> np.ndarray:
    """int64 lookup: source code -> index into `classes` (-1 where the class is not used)."""
    items = dict(enumerate(order)) if isinstance(order, tuple) else order
    table = np.full(max(items) + 1, -1, dtype=np.int64)
    for code, name in items.items():
        canon = canonical_name(name)
        if canon in classes:
            table[code] = classes.index(canon)
    return table
