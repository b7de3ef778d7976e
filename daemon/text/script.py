"""Chinese script conversion (simplified <-> traditional) with OpenCC, a maintained phrase-level converter."""

from __future__ import annotations

from functools import cache
from typing import Any

_CONFIGS = {"simplified": "t2s", "traditional": "s2t"}


@cache
def _converter(config: str) -> Any:
    import opencc

    return opencc.OpenCC(config)


def convert_script(text: str, target: str) -> str:
    """`target` is 'simplified', 'traditional' or 'as_is'."""
    config = _CONFIGS.get(target)
    if config is None or not text:
        return text
    return str(_converter(config).convert(text))
