"""Text that both databases can store: what PostgreSQL and UTF-8 would refuse, made safe.

PostgreSQL refuses U+0000 in text and JSON, and a lone surrogate (U+D800–U+DFFF) cannot be
encoded as UTF-8 at all, so either would turn an accepted complaint into a row the store
refuses. Other C0 controls are removed too: they carry nothing a handler could read, and
terminals and spreadsheets misbehave on them. Tab, newline and carriage return stay.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_SURROGATES = re.compile(r"[\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def storable(text: str) -> str:
    """``text`` with C0 controls (but tab, newline, CR) removed and lone surrogates replaced."""
    return _SURROGATES.sub(REPLACEMENT, _CONTROLS.sub("", text))


@dataclass
class Storable:
    """One walk over a draft's raw input, counting what was changed where (never the text)."""

    value: Any = None
    removed: Counter[str] = field(default_factory=Counter)
    replaced: Counter[str] = field(default_factory=Counter)

    @property
    def changed(self) -> bool:
        return bool(self.removed or self.replaced)

    @classmethod
    def clean(cls, data: Any) -> Storable:
        walk = cls()
        walk.value = walk._clean(data, "")
        return walk

    def note(self) -> str:
        parts = [
            f"{name}: {count} control character(s) removed"
            for name, count in sorted(self.removed.items())
        ] + [
            f"{name}: {count} invalid character(s) replaced with U+FFFD"
            for name, count in sorted(self.replaced.items())
        ]
        return "text made storable (" + "; ".join(parts) + ")"

    def _clean(self, value: Any, path: str) -> Any:
        if isinstance(value, str):
            return self._text(value, path)
        if isinstance(value, BaseModel):
            dumped = value.model_dump()
            cleaned = self._clean(dumped, path)
            return value if cleaned == dumped else cleaned
        if isinstance(value, dict):
            return {
                self._clean(k, path) if isinstance(k, str) else k: self._clean(
                    v, f"{path}.{k}" if path else str(k)
                )
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return type(value)(self._clean(v, path) for v in value)
        return value

    def _text(self, value: str, path: str) -> str:
        controls = len(_CONTROLS.findall(value))
        surrogates = len(_SURROGATES.findall(value))
        if not (controls or surrogates):
            return value
        if controls:
            self.removed[path or "text"] += controls
        if surrogates:
            self.replaced[path or "text"] += surrogates
        return storable(value)
