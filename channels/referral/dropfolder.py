"""A source's drop folder: order files (JSON or XML) delivered by an SFTP server.

A file is read only when it is complete. Uploaders write under a temporary name and rename
when done (write-then-rename), so temporary names are never touched: dotfiles, and names
ending in ``.part``, ``.tmp``, ``.filepart``, ``.partial``, ``.crdownload``, ``.swp`` or
``~``. A file must also be at least ``drop_folder_min_age_seconds`` old and the same size
as at the previous look, for uploaders that write in place.

Each file is first claimed by renaming it into ``processing/`` (a rename is atomic, so two
workers never read the same file), then handed to the same intake as the webhook, and moved:

* to ``processed/`` after the hand-off (a duplicate order too: it already has its ticket);
* to ``failed/`` with ``<name>.error.txt`` saying why, when the file itself is wrong (not
  JSON/XML, a field that does not fit the mapping, an update of an unknown order);
* back into the folder when the store or the queue is down, to be tried again.

Files left in ``processing/`` by a worker that died are put back at start-up.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import structlog

from channels.referral.mapping import MappingError
from channels.referral.orders import ReferralIntake, UnknownOrder
from channels.referral.payload import Format, PayloadError
from channels.referral.settings import ReferralSource

log = structlog.get_logger(__name__)

TEMPORARY_SUFFIXES = (".part", ".tmp", ".filepart", ".partial", ".crdownload", ".swp", "~")
FORMATS: dict[str, Format] = {".json": "json", ".xml": "xml"}
PROCESSING, PROCESSED, FAILED = "processing", "processed", "failed"


def is_temporary(name: str) -> bool:
    lowered = name.lower()
    return name.startswith((".", "~")) or lowered.endswith(TEMPORARY_SUFFIXES)


@dataclass
class ScanResult:
    processed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)  # not complete yet, or retried later


class DropFolder:
    def __init__(
        self,
        source: ReferralSource,
        intake: ReferralIntake,
        *,
        min_age_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        assert source.drop_folder is not None
        self.source = source
        self.root = source.drop_folder
        self._intake = intake
        self._min_age = min_age_seconds
        self._clock = clock
        self._sizes: dict[str, int] = {}
        self._prepared = False

    def prepare(self) -> None:
        """Create the folders and put back files a dead worker left in ``processing/``."""
        for name in (PROCESSING, PROCESSED, FAILED):
            (self.root / name).mkdir(parents=True, exist_ok=True)
        for left in (self.root / PROCESSING).iterdir():
            if left.is_file():
                os.replace(left, self.root / left.name)
                log.warning("drop_file_recovered", source=self.source.key, file=left.name)
        self._prepared = True

    async def scan(self) -> ScanResult:
        """Take in every complete file; raises ``OSError`` when the folder is unusable."""
        if not self._prepared:
            await asyncio.to_thread(self.prepare)
        result = ScanResult()
        for path in await asyncio.to_thread(self._ready_files, result):
            claimed = self.root / PROCESSING / path.name
            try:
                os.replace(path, claimed)
            except FileNotFoundError:
                continue  # another worker claimed it first
            await self._process(claimed, result)
        return result

    def _ready_files(self, result: ScanResult) -> list[Path]:
        ready: list[Path] = []
        now = self._clock()
        seen: dict[str, int] = {}
        for entry in sorted(os.scandir(self.root), key=lambda e: e.name):
            if not entry.is_file(follow_symlinks=False) or is_temporary(entry.name):
                continue
            stat = entry.stat(follow_symlinks=False)
            seen[entry.name] = stat.st_size
            settled = now - stat.st_mtime >= self._min_age
            unchanged = self._sizes.get(entry.name) == stat.st_size or self._min_age == 0
            if settled and unchanged:
                ready.append(Path(entry.path))
            else:
                result.waiting.append(entry.name)
        self._sizes = seen
        return ready

    async def _process(self, path: Path, result: ScanResult) -> None:
        name = path.name
        fmt = FORMATS.get(path.suffix.lower())
        if fmt is None:
            known = ", ".join(FORMATS)
            self._fail(path, [f"(file): not an order file; names must end in {known}"], result)
            return
        raw = await asyncio.to_thread(path.read_bytes)
        if len(raw) > self.source.max_body_bytes:
            self._fail(path, [f"(file): larger than {self.source.max_body_bytes} bytes"], result)
            return
        try:
            received = await self._intake.receive(self.source, raw, fmt=fmt)
        except PayloadError as exc:
            self._fail(path, [f"(file): {exc}"], result)
            return
        except MappingError as exc:
            self._fail(path, [f"{where}: {why}" for where, why in exc.fields.items()], result)
            return
        except UnknownOrder as exc:
            self._fail(path, [f"(order): {exc}"], result)
            return
        except Exception as exc:
            # The store or the queue is down (or a bug): keep the file for the next scan.
            os.replace(path, self.root / name)
            result.waiting.append(name)
            log.error("drop_file_deferred", source=self.source.key, file=name, error=repr(exc))
            return
        self._move(path, self.root / PROCESSED)
        result.processed.append(name)
        log.info(
            "drop_file_processed",
            source=self.source.key,
            file=name,
            number=received.number,
            new=received.new,
            update=received.update.value if received.update else None,
            duplicate=received.duplicate,
        )

    def _fail(self, path: Path, reasons: list[str], result: ScanResult) -> None:
        target = self._move(path, self.root / FAILED)
        stamp = datetime.now(UTC).isoformat()
        text = "\n".join([f"{target.name} could not be taken in ({stamp}):", *reasons, ""])
        target.with_name(f"{target.name}.error.txt").write_text(text, encoding="utf-8")
        result.failed.append(path.name)
        log.warning("drop_file_failed", source=self.source.key, file=path.name, reasons=reasons)

    @staticmethod
    def _move(path: Path, folder: Path) -> Path:
        """Move without overwriting: a second file of the same name gets a counter."""
        target = folder / path.name
        counter = 1
        while target.exists():
            target = folder / f"{path.stem}.{counter}{path.suffix}"
            counter += 1
        os.replace(path, target)
        return target
