"""Whole pickled timm models (HSEmotion's releases) -> a safetensors state dict, without running
any of the pickle's code.

torch.load(weights_only=True) refuses such files because they name classes. Here each class the
pickle names is checked against an allowlist (timm's and torch's modules only; anything else,
e.g. `__main__` or `builtins.eval`, is refused) and stood in for by an inert stub that only
records the state it is given; parameters and buffers are then read off the stubs' recorded
`_parameters` / `_buffers` / `_modules`. No constructor, `__setstate__` or function of the
original classes ever runs."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import FerBenchError

ALLOWED_PREFIXES = ("timm.", "torch.nn.", "torch.", "functools.partial")


class _Stub:
    """Stands in for one allowlisted class or function named by the pickle."""

    path = ""

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs) -> None:  # called as a function (REDUCE)
        self.args = args

    def __setstate__(self, state) -> None:
        self.state = state


def pickled_globals(path: Path) -> list[str]:
    """The classes and functions a torch.save file names, read without unpickling it."""
    try:
        return torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception as e:
        raise FerBenchError(f"{path}: not a torch.save (zip) checkpoint: "
                            f"{str(e).splitlines()[0][:200]}") from e


def _stubs(path: Path) -> list[tuple[type, str]]:
    names = pickled_globals(path)
    refused = [n for n in names if not n.startswith(ALLOWED_PREFIXES)]
    if refused:
        raise FerBenchError(f"{path}: refused to convert: the pickle names code outside timm "
                            f"and torch ({', '.join(sorted(refused)[:6])})")
    return [(type(n.rsplit(".", 1)[-1], (_Stub,), {"path": n}), n) for n in names]


def _collect(obj, prefix: str, out: dict[str, torch.Tensor]) -> None:
    state = getattr(obj, "state", None)
    if not isinstance(state, dict):
        return
    skip = state.get("_non_persistent_buffers_set") or set()
    for table in ("_parameters", "_buffers"):
        for name, t in (state.get(table) or {}).items():
            if isinstance(t, torch.Tensor) and name not in skip:
                out[prefix + name] = t.detach().clone().contiguous()
    for name, child in (state.get("_modules") or {}).items():
        if child is not None:
            _collect(child, f"{prefix}{name}.", out)


def read_timm_pickle(path: Path) -> dict[str, torch.Tensor]:
    """The state dict of a torch.save(model) file, read through inert stubs."""
    stubs = _stubs(path)
    try:
        with torch.serialization.safe_globals(stubs):
            root = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise FerBenchError(f"{path}: cannot read it as a pickled model: "
                            f"{str(e).splitlines()[0][:200]}") from e
    if isinstance(root, dict) and all(isinstance(v, torch.Tensor) for v in root.values()):
        return dict(root)  # already a plain state dict
    if not isinstance(root, _Stub):
        raise FerBenchError(f"{path}: expected a pickled timm model, got {type(root).__name__}")
    state: dict[str, torch.Tensor] = {}
    _collect(root, "", state)
    if not state:
        raise FerBenchError(f"{path}: the pickled model holds no parameters")
    return state


def convert_timm_pickle(src: Path, dst: Path, arch: str) -> dict[str, list[int]]:
    """Write `src`'s weights as safetensors for `timm.create_model(arch, num_classes=0)`.

    Every key must fit `arch` exactly except the classifier, which is dropped; returns the
    dropped keys' shapes."""
    import timm
    from safetensors.torch import save_file

    same = any("Conv2dSame" in n for n in pickled_globals(Path(src)))
    if same != arch.startswith("tf_"):  # padding is not in the keys: check it here
        raise FerBenchError(f"{src}: the pickled model {'uses' if same else 'does not use'} "
                            f"TensorFlow 'same' padding (Conv2dSame), but timm {arch!r} "
                            f"{'does not' if same else 'does'}; pick the matching tf_/non-tf_ "
                            "architecture")
    state = read_timm_pickle(Path(src))
    with torch.device("meta"):
        own = timm.create_model(arch, pretrained=False, num_classes=0).state_dict()
    dropped = {k: list(v.shape) for k, v in state.items()
               if k not in own and k.startswith("classifier.")}
    state = {k: v for k, v in state.items() if k not in dropped}
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        parts = [f"{label}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}"
                 for label, keys in (("missing", missing), ("unexpected", unexpected),
                                     ("wrong shape", wrong)) if keys]
        raise FerBenchError(f"{src}: weights do not fit timm {arch!r} ({'; '.join(parts)})")
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f"{dst.name}.{os.getpid()}.tmp")  # cells may convert concurrently
    save_file(state, str(tmp), metadata={"source": Path(src).name, "arch": arch,
                                         "dropped": ",".join(dropped)})
    tmp.replace(dst)
    return dropped
