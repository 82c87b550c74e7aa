"""`fer-bench prompts ...`: prompt sets."""

from __future__ import annotations

import json

import typer

from .common import Fmt, console, prompts_app


@prompts_app.command("list")
def prompts_list() -> None:
    """Prompt sets found in the prompt directories."""
    from ..text import load_prompt_set, prompt_sets

    for name in prompt_sets():
        ps = load_prompt_set(name)
        n = sum(len(v) for v in ps.prompts.values())
        console.print(f"[bold]{name}[/bold] ({n} prompts)  {ps.description}")


@prompts_app.command("show")
def prompts_show(name: str, fmt: Fmt = "table") -> None:
    """Every prompt of a set, per class."""
    from ..text import load_prompt_set

    ps = load_prompt_set(name)
    if fmt == "json":
        d = ps.to_dict()
        typer.echo(json.dumps({"name": d["name"], "classes": d["classes"]}, indent=2))
        return
    console.print(f"[bold]{ps.name}[/bold]: {ps.description}")
    for c, ps_ in ps.prompts.items():
        console.print(f"  [bold]{c}[/bold]: " + " | ".join(ps_))


