"""`python -m mlflow_gateway_tools.price_check MODEL...`: which models the price source does not
price, each with the closest names it knows, as one JSON object on stdout.

The gateway role's preflight runs it on the controller to warn (never fail) about an endpoint
whose requests analyze-costs would report as unpriced. It reads only the installed package's
data: no network, about half a second.
"""

from __future__ import annotations

import json
import sys

from mlflow_gateway_tools import price_source
from mlflow_gateway_tools.pricing import PriceTable


def check(models: list[str]) -> dict[str, object]:
    prices = PriceTable()
    described = price_source.describe()
    return {
        "source": f"{described['name']} {described['version']}",
        "unknown": [
            {"model": model, "closest": price_source.closest_names(model)}
            for model in dict.fromkeys(models)  # each once, in order
            if prices.lookup(model) is None
        ],
    }


def main(argv: list[str] | None = None) -> int:
    models = sys.argv[1:] if argv is None else argv
    print(json.dumps(check(models)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
