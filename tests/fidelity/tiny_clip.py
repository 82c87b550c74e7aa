"""A tiny open_clip architecture registered with open_clip itself, for tests that need a real
CLIP (image tower, text tower, logit_scale) that builds in milliseconds."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import open_clip

TINY_CLIP = {"embed_dim": 64,
             "vision_cfg": {"image_size": 96, "layers": 2, "width": 96, "head_width": 32,
                            "patch_size": 16},
             "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2,
                          "layers": 2}}
MODEL = "ferbench-tiny-vit"


def register() -> str:
    if MODEL not in open_clip.list_models():
        path = Path(tempfile.mkdtemp()) / f"{MODEL}.json"
        path.write_text(json.dumps(TINY_CLIP))
        open_clip.add_model_config(path)
    return MODEL
