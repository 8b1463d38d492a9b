"""What model calls cost, from a price file the user writes (TOML; none is bundled).

Prices change and differ by contract, so agentrace ships none. The file gives USD
per million tokens, input and output, per model; a name may end in ``*`` to match
every model it starts (the longest such prefix wins)::

    # ~/.config/agentrace/prices.toml, or the file named by AGENTRACE_PRICES
    [models."gpt-4o"]
    input = 2.50
    output = 10.00

    [models."claude-3-5-sonnet*"]
    input = 3.00
    output = 15.00

A model the file does not name has no cost: the total then says how many tokens
went unpriced rather than guess.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PriceError", "Prices", "default_price_path", "load_prices"]


class PriceError(ValueError):
    """The price file cannot be read; the message names the file and what is wrong."""


@dataclass(frozen=True, slots=True)
class Prices:
    """USD per million tokens: model name (or ``prefix*``) -> (input, output)."""

    models: Mapping[str, tuple[float, float]]
    path: str = ""

    def price_of(self, model: str) -> tuple[float, float] | None:
        if model in self.models:
            return self.models[model]
        best = None
        for name, price in self.models.items():
            prefix = name.endswith("*") and model.startswith(name[:-1])
            if prefix and (best is None or len(name) > len(best[0])):
                best = (name, price)
        return best[1] if best else None

    def cost(self, by_model: Mapping[str, tuple[int, int]]) -> tuple[float, int]:
        """(USD, tokens of models without a price) for tokens by model."""
        usd, unpriced = 0.0, 0
        for model, (tin, tout) in by_model.items():
            price = self.price_of(model)
            if price is None:
                unpriced += tin + tout
                continue
            usd += (tin * price[0] + tout * price[1]) / 1_000_000
        return usd, unpriced


def default_price_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("AGENTRACE_PRICES"):
        return Path(env["AGENTRACE_PRICES"])
    base = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "agentrace" / "prices.toml"


def load_prices(path: Path | None = None) -> Prices | None:
    """The prices in ``path`` (default: :func:`default_price_path`); None when there is no file."""
    path = default_price_path() if path is None else path
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PriceError(f"{path}: cannot read the price file: {exc}") from None
    models = data.get("models")
    if not isinstance(models, dict):
        raise PriceError(f'{path}: no [models."NAME"] tables (see docs/tui.md, Cost)')
    out: dict[str, tuple[float, float]] = {}
    for name, entry in models.items():
        if not isinstance(entry, dict):
            raise PriceError(f"{path}: models.{name} is not a table with input and output")
        try:
            out[name] = (float(entry.get("input", 0)), float(entry.get("output", 0)))
        except (TypeError, ValueError):
            raise PriceError(
                f"{path}: models.{name}: input and output are USD per million tokens (numbers)"
            ) from None
    return Prices(out, str(path))
