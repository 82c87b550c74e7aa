"""fer-bench: which image encoder, with which prompts, recognises fear and disgust best?"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# Public helpers for plugins, imported on first use so `import fer_bench` stays light.
_LAZY = {"register_backbone": "fer_bench.backbones", "create_backbone": "fer_bench.backbones",
         "register_head": "fer_bench.heads", "HeadSpec": "fer_bench.heads",
         "Head": "fer_bench.heads"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fer_bench' has no attribute {name!r}")


__all__ = ["Head", "HeadSpec", "__version__", "create_backbone", "register_backbone",
           "register_head"]
