"""``shouli import-calls FILE``: the command around ``channels/hotline/importer.py``.

Exit codes: 0 every row imported or already there; 1 some rows rejected (see the error
report; the good rows went on); 2 the file cannot be imported at all (unreadable, empty,
binary, a spreadsheet, required columns missing) or an unknown vendor; 75 the queue or the
store stayed unavailable (run the same command again: it is idempotent).

Kept free of the service's imports at module level: ``ingest.app.cli`` imports it at start-up.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from ingest.app.console import EXIT_TEMPFAIL, config_option, settings_or_exit

EXIT_REJECTED = 1
EXIT_UNREADABLE = 2


@click.command("import-calls")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--vendor", default=None, help="export format from hotline.vendors (column names)")
@click.option(
    "--errors",
    "errors_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="error report (CSV: row, field, reason); default FILE.errors.csv",
)
@click.option("--no-progress", is_flag=True, help="no progress bar (also off when not a TTY)")
@click.option("--batch-size", type=click.IntRange(1, 5000), default=None)
@click.option("--json", "as_json", is_flag=True, help="print the summary as one JSON object")
@config_option
def import_calls(
    file: Path,
    vendor: str | None,
    errors_path: Path | None,
    no_progress: bool,
    batch_size: int | None,
    as_json: bool,
    config_path: Path | None,
) -> None:
    """Import a call-centre export (CSV or JSON lines) as hotline tickets."""
    from channels.hotline.importer import CallImporter, ErrorReport, ImportInterrupted
    from channels.hotline.records import CallContext
    from channels.hotline.rows import RowMapper
    from channels.hotline.settings import API_VENDOR
    from channels.hotline.sources import CallSource, FileProblem
    from ingest.app.runtime import open_runtime
    from router.calendar import WorkCalendar
    from store.db import STORE_ERRORS

    settings = settings_or_exit(config_path)
    hotline = settings.hotline
    try:
        mapping = hotline.vendor(vendor)
    except KeyError:
        known = ", ".join(hotline.vendor_names())
        click.echo(f"unknown vendor {vendor!r} (known: {known}; see hotline.vendors)", err=True)
        sys.exit(EXIT_UNREADABLE)
    vendor_name = vendor or hotline.default_vendor or API_VENDOR
    try:
        source = CallSource(file, encoding=mapping.encoding, delimiter=mapping.delimiter)
        mapper = RowMapper(
            vendor_name,
            mapping,
            timezone=settings.organisation.timezone,
            categories=frozenset(c.key for c in settings.categories),
            agent_departments={a.id: a.department for a in hotline.agents},
            headers=source.headers if source.kind == "csv" else (),
        )
    except FileProblem as exc:
        click.echo(f"{file}: {exc}", err=True)
        sys.exit(EXIT_UNREADABLE)

    report_path = errors_path or file.with_name(file.name + ".errors.csv")
    if not os.access(report_path.parent, os.W_OK):
        source.close()
        click.echo(
            f"{report_path}: cannot write the error report here; use --errors PATH", err=True
        )
        sys.exit(EXIT_UNREADABLE)
    report = ErrorReport(report_path)
    show = not no_progress and sys.stderr.isatty()

    async def go() -> Any:
        runtime = await open_runtime(settings)
        try:
            importer = CallImporter(
                runtime,
                mapper,
                CallContext(
                    region=hotline.default_region,
                    calendar=WorkCalendar(settings.calendar, settings.organisation.timezone),
                ),
                batch_size=batch_size or hotline.import_batch_size,
            )
            with _Progress(source.size, enabled=show) as progress:
                return await importer.run(source, report, progress.update)
        finally:
            await runtime.close()

    started = time.monotonic()
    try:
        summary = asyncio.run(go())
    except ImportInterrupted as exc:
        done = exc.summary
        click.echo(
            f"stopped: the queue is unavailable after {done.imported} rows were queued; "
            "run the same command again (rows already imported are skipped)",
            err=True,
        )
        sys.exit(EXIT_TEMPFAIL)
    except STORE_ERRORS as exc:
        # The driver's own first line ("database is locked"), never the statement or its
        # parameters, which can hold callers' numbers.
        reason = (str(getattr(exc, "orig", None) or type(exc).__name__).splitlines() or [""])[0]
        click.echo(f"stopped: the store is unavailable ({reason}); try again", err=True)
        sys.exit(EXIT_TEMPFAIL)
    finally:
        source.close()
        report.close()
    elapsed = time.monotonic() - started
    if as_json:
        body = summary.as_dict() | {"seconds": round(elapsed, 3)}
        if report.count:
            body["error_report"] = str(report.path)
        click.echo(json.dumps(body))
    else:
        rate = summary.rows / elapsed if elapsed > 0 else 0.0
        click.echo(
            f"{file.name}: {summary.rows} rows in {elapsed:.1f} s ({rate:.0f} rows/s): "
            f"imported {summary.imported}, duplicates {summary.duplicates}, "
            f"rejected {summary.rejected}"
        )
        if report.count:
            click.echo(f"rejected rows: {report.path} (row, field, reason)")
    sys.exit(EXIT_REJECTED if summary.rejected else 0)


class _Progress:
    """A tqdm bar on stderr: bytes read (for a true ETA), rows and rows/s beside it."""

    def __init__(self, total_bytes: int, *, enabled: bool) -> None:
        self._enabled = enabled
        self._bar: Any = None
        self._total = total_bytes
        self._started = time.monotonic()
        self._position = 0

    def __enter__(self) -> _Progress:
        if self._enabled:
            from tqdm import tqdm

            try:
                columns, lines = os.get_terminal_size(sys.stderr.fileno())
            except OSError:
                columns, lines = 0, 0

            self._bar = tqdm(
                total=self._total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc="import-calls",
                file=sys.stderr,
                # A terminal that reports no size (a bare pty, some CI runners) makes tqdm
                # print nothing at all; assume a common one.
                ncols=columns or 100,
                nrows=lines or 24,
            )
        return self

    def update(self, position: int, summary: Any) -> None:
        if self._bar is None:
            return
        self._bar.update(max(position - self._position, 0))
        self._position = max(position, self._position)
        elapsed = max(time.monotonic() - self._started, 1e-9)
        self._bar.set_postfix(
            rows=summary.rows,
            rows_s=f"{summary.rows / elapsed:.0f}",
            rejected=summary.rejected,
            refresh=False,
        )

    def __exit__(self, *_exc: object) -> None:
        if self._bar is not None:
            self._bar.close()
