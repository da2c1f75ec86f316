"""The merged OpenAPI document of every function and the front door, and baking it to a file.

Locally the front door computes it by importing every function. Its image holds no function,
so the document is baked when the image is built and read from ``OPENAPI_FILE`` at run time:

    python -m ingress.openapi /app/openapi.json
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

from ingress.routes import FUNCTIONS
from shared.docs import app_openapi, merge_openapi


def function_app(name: str) -> Any:
    return importlib.import_module(f"functions.{name}.app").app


def merged_openapi() -> dict[str, Any]:
    """Every function's document and the front door's own, merged into one."""
    from ingress.front import app as front

    documents = [app_openapi(function_app(name)) for name in FUNCTIONS]
    return merge_openapi([*documents, app_openapi(front)])


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m ingress.openapi OUTPUT.json", file=sys.stderr)
        return 2
    document = merged_openapi()
    Path(argv[0]).write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
    print(f"{argv[0]}: {len(document['paths'])} paths", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
