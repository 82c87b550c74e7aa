"""fer-bench: which image encoder, with which prompts, recognises fear and disgust best?"""

__version__ = "0.1.0"
