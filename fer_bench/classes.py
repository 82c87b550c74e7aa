"""Canonical expression classes. Every dataset is mapped to these names, never by index."""

from __future__ import annotations

# FER2013 order: results, confusion matrices and per-class metrics always use it.
CANONICAL: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
CANONICAL8: tuple[str, ...] = CANONICAL + ("contempt",)
FEAR_DISGUST: tuple[str, str] = ("fear", "disgust")

# Names seen in dataset folders, label files and papers -> canonical name.
SYNONYMS: dict[str, str] = {
    "anger": "angry",
    "angry": "angry",
    "mad": "angry",
    "disgust": "disgust",
    "disgusted": "disgust",
    "fear": "fear",
    "fearful": "fear",
    "afraid": "fear",
    "scared": "fear",
    "happy": "happy",
    "happiness": "happy",
    "joy": "happy",
    "sad": "sad",
    "sadness": "sad",
    "surprise": "surprise",
    "surprised": "surprise",
    "neutral": "neutral",
    "contempt": "contempt",
}


def canonical_name(name: str) -> str | None:
    """The canonical class for a dataset's class name, or None when it is not an expression."""
    return SYNONYMS.get(name.strip().lower())
