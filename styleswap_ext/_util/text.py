"""Wording shared by messages (no torch import: the command line uses it before loading anything)."""


def plural(n: int, noun: str, many: str = None) -> str:
    """``plural(1, "style")`` -> "1 style", ``plural(2, "style")`` -> "2 styles" (``many``: an irregular plural)."""
    return f"{n} {noun if n == 1 else (many or noun + 's')}"
