"""Text encoders (the language side of the `lasted` head) and prompt sets."""

from .encoders import TEXT_ENCODERS, TextEncoder, check_text_encoder, create_text_encoder
from .prompts import PromptSet, load_prompt_set, prompt_sets

__all__ = ["TEXT_ENCODERS", "PromptSet", "TextEncoder", "check_text_encoder",
           "create_text_encoder", "load_prompt_set", "prompt_sets"]
