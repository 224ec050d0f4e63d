"""Policy kinds are discovered from the folders under gateway/policies/.

The YAML `kind` is the folder name; each folder has `schema.py` defining
`Config` and `handler.py` defining `Handler`.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from pydantic import BaseModel

from gateway.policies.base import Handler


@dataclass(frozen=True)
class PolicyKind:
    name: str
    config: type[BaseModel]
    handler: type[Handler[BaseModel]]


@cache
def kinds() -> dict[str, PolicyKind]:
    found: dict[str, PolicyKind] = {}
    root = Path(__file__).parent
    for module in sorted(pkgutil.iter_modules([str(root)]), key=lambda m: m.name):
        if not module.ispkg:
            continue
        schema = importlib.import_module(f"gateway.policies.{module.name}.schema")
        handler = importlib.import_module(f"gateway.policies.{module.name}.handler")
        found[module.name] = PolicyKind(module.name, schema.Config, handler.Handler)
    return found
