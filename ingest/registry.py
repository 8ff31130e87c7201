"""Things by name (channels, workers): a name registered twice, or asked for but never
registered, is a mistake to stop the process at start-up for, naming it.

A plain dict would keep the last of two registrations and drop the other without a word, and
a KeyError names only the missing key, not what the operator could have typed instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TypeVar

from ingest.errors import Misconfigured

T = TypeVar("T")


class DuplicateName(Misconfigured, ValueError):
    def __init__(self, kind: str, name: str) -> None:
        super().__init__(f"duplicate {kind} name {name!r}: registered more than once")
        self.kind = kind
        self.name = name


class UnknownName(Misconfigured, KeyError):
    # A KeyError, so ``name in registry`` and ``registry.get(name)`` work as for any mapping.
    def __init__(self, kind: str, name: str, known: Iterable[str]) -> None:
        self.message = f"unknown {kind} {name!r}; known {kind}s: {', '.join(sorted(known))}"
        super().__init__(self.message)
        self.kind = kind
        self.name = name

    def __str__(self) -> str:
        # KeyError's own would show the repr of the message, quotes and all.
        return self.message


class Registry(Mapping[str, T]):
    """A read-only mapping of names that refuses duplicates when it is built."""

    def __init__(
        self,
        kind: str,
        entries: Iterable[tuple[str, T]],
        *,
        unknown: type[UnknownName] = UnknownName,
    ) -> None:
        self.kind = kind
        self._unknown = unknown
        self._entries: dict[str, T] = {}
        for name, entry in entries:
            if name in self._entries:
                raise DuplicateName(kind, name)
            self._entries[name] = entry

    def __getitem__(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise self._unknown(self.kind, name, self._entries) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
