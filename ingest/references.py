"""Checking that config names point at departments and categories that exist, with one
message for every section: ``path: unknown department 'x' (known: a, b)``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

Problem = tuple[str, str]


@dataclass(frozen=True)
class KnownKeys:
    departments: Sequence[str]
    categories: Sequence[str]

    def department(self, where: str, key: str | None) -> list[Problem]:
        return _unknown(where, key, self.departments, "department")

    def category(self, where: str, key: str | None) -> list[Problem]:
        return _unknown(where, key, self.categories, "category")

    def departments_in(self, where: str, values: Mapping[str, str]) -> list[Problem]:
        """Every value of a label → department map (``where.<label>``)."""
        return [
            p for label, key in values.items() for p in self.department(f"{where}.{label}", key)
        ]

    def categories_in(self, where: str, values: Mapping[str, str]) -> list[Problem]:
        return [p for label, key in values.items() for p in self.category(f"{where}.{label}", key)]


def _unknown(where: str, key: str | None, known: Sequence[str], kind: str) -> list[Problem]:
    if key is None or key in known:
        return []
    return [(where, f"unknown {kind} {key!r} (known: {', '.join(known) or 'none'})")]
