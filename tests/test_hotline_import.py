"""shouli import-calls: messy exports (BOM, GBK, quoted newlines, bad rows, duplicates), files
that cannot be imported, idempotent re-imports, a router killed mid-import, bounded memory.
The real command runs as a subprocess against the real store and queue."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import pty
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from bench.hotline import write_export
from store.models import Ticket
from tests.stack import Stack, notes, ticket_of

FIXTURES = Path(__file__).parent / "fixtures" / "calls"


def fixture(stack: Stack, name: str) -> Path:
    """A copy in the test's own directory, so the error report lands there."""
    target = stack.tmp_path / name
    shutil.copyfile(FIXTURES / name, target)
    return target


async def import_calls(stack: Stack, path: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    code, out, err = await stack.shouli("import-calls", str(path), "--json", *args, timeout=300)
    summary = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    return code, summary, err


def error_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


async def by_source_key(stack: Stack) -> dict[str, str]:
    async with stack.rt.database.sessions() as session:
        rows = await session.execute(select(Ticket.source_key, Ticket.number))
        return dict(rows.all())


async def test_a_messy_utf8_export_imports_the_good_rows_and_reports_the_bad_ones(
    stack: Stack,
) -> None:
    path = fixture(stack, "callcentre_utf8_bom.csv")
    code, summary, _ = await import_calls(stack, path)
    assert code == 1, "rows were rejected"
    assert summary | {"seconds": 0} == {
        "rows": 11,
        "imported": 6,
        "duplicates": 1,
        "rejected": 4,
        "seconds": 0,
        "error_report": str(path) + ".errors.csv",
    }
    report = error_rows(Path(summary["error_report"]))
    assert [(r["row"], r["field"]) for r in report] == [
        ("5", "started_at"),
        ("6", "category"),
        ("9", "row"),
        ("10", "agent_id"),
    ]
    assert "'咨询'" in report[1]["reason"] and "category_values" in report[1]["reason"]
    text = _read(Path(summary["error_report"]))
    for personal in ("139", "王先生", "赵女士", "周女士", "13900004444", "咨询营业时间"):
        assert personal not in text, f"no personal data in the report: {personal}"

    assert await stack.drain() == 6
    tickets = await by_source_key(stack)
    assert set(tickets) == {
        "HL20250616-0001",
        "HL20250616-0002",
        "HL20250616-0005",
        "HL20250616-0006",
        "HL20250616-0009",
        "HL20250614-0010",
    }
    first = await ticket_of(stack, tickets["HL20250616-0001"])
    assert first["received_at"] == "2025-06-16T02:05:09Z", "export times are Shanghai time"
    assert first["complainant"]["phone"] == "+8613812345678"
    assert first["first_contact"] == {
        "kind": "agent",
        "id": "1001",
        "department": "customer_service",
    }
    assert first["category"] == "supply_outage" and "户号：31000456" in first["body"]
    quoted = await ticket_of(stack, tickets["HL20250616-0002"])
    assert "自来水发黄，有异味，\n烧开后有沉淀，已经三天了" in quoted["body"], "a quoted newline"
    assert quoted["complainant"]["phone"] == "+8675588881234"
    resolved = await ticket_of(stack, tickets["HL20250616-0005"])
    assert resolved["status"] == "closed"
    closed = next(e for e in resolved["events"] if e["kind"] == "closed_on_contact")
    assert closed["detail"]["answer_code"] == "GF-017"
    anonymous = await ticket_of(stack, tickets["HL20250616-0006"])
    assert anonymous["complainant"]["anonymous"] is True
    assert "caller_withheld" in notes(anonymous)
    impossible = await ticket_of(stack, tickets["HL20250616-0009"])
    assert impossible["complainant"]["phone"] is None
    assert any(n.startswith("phone_invalid:") for n in notes(impossible))
    night = await ticket_of(stack, tickets["HL20250614-0010"])
    assert "after_hours" in notes(night)
    assert night["first_contact"]["department"] == "customer_service", "vendor default team"
    assert night["due_at"] == "2025-06-20T10:00:00Z", "the clock starts Monday 09:00"


async def test_importing_the_same_file_twice_makes_no_duplicates(stack: Stack) -> None:
    path = fixture(stack, "callcentre_utf8_bom.csv")
    stack.start_router()
    _, first, _ = await import_calls(stack, path)
    assert await stack.drain() == first["imported"] == 6
    code, again, _ = await import_calls(stack, path)
    assert code == 1, "the same rows are still rejected"
    assert (again["imported"], again["duplicates"], again["rejected"]) == (0, 7, 4)
    assert await stack.drain() == 6, "the second import made no ticket, not even later"


async def test_a_gbk_export_from_excel_is_detected_and_decoded(embedded_stack: Stack) -> None:
    path = fixture(embedded_stack, "callcentre_gbk.csv")
    code, summary, _ = await import_calls(embedded_stack, path)
    assert (code, summary["imported"], summary["rejected"]) == (0, 3, 0)
    assert not _exists(Path(str(path) + ".errors.csv")), "no report without errors"
    assert await embedded_stack.drain() == 3
    tickets = await by_source_key(embedded_stack)
    water = await ticket_of(embedded_stack, tickets["HL20250617-0101"])
    assert water["subject"] == "水龙头流出的水浑浊发白"
    assert water["complainant"] == {
        "name": "钱先生",
        "phone": "+861065123456",
        "email": None,
        "anonymous": False,
        "confidential": False,
    }
    callback = await ticket_of(embedded_stack, tickets["HL20250617-0102"])
    assert callback["complainant"]["phone"] == "+8613611112222", "the contact number given"
    assert callback["category"] == "installation"
    outbound = await ticket_of(embedded_stack, tickets["HL20250617-0103"])
    assert outbound["received_at"] == "2025-06-17T02:02:00Z"
    assert any(n.startswith("call: outbound") for n in notes(outbound))


async def test_a_utf16_tab_separated_export_is_read_too(embedded_stack: Stack) -> None:
    """Excel's "Unicode text": UTF-16 with a BOM, tab-separated, a blank line in it."""
    text = (FIXTURES / "callcentre_gbk.csv").read_bytes().decode("gbk").replace(",", "\t")
    lines = text.split("\r\n")
    lines.insert(2, "")
    path = embedded_stack.tmp_path / "unicode.txt"
    path.write_bytes("\r\n".join(lines).encode("utf-16"))
    code, summary, _ = await import_calls(embedded_stack, path)
    assert (code, summary["imported"], summary["rejected"]) == (0, 3, 0)
    assert await embedded_stack.drain() == 3
    tickets = await by_source_key(embedded_stack)
    water = await ticket_of(embedded_stack, tickets["HL20250617-0101"])
    assert water["subject"] == "水龙头流出的水浑浊发白"


async def test_json_lines_with_the_api_field_names_import_with_vendor_api(
    embedded_stack: Stack,
) -> None:
    path = fixture(embedded_stack, "calls_api.jsonl")
    code, summary, _ = await import_calls(embedded_stack, path, "--vendor", "api")
    assert (code, summary["imported"], summary["rejected"]) == (1, 3, 3)
    report = error_rows(Path(summary["error_report"]))
    assert [(r["row"], r["field"]) for r in report] == [
        ("3", "row"),
        ("4", "row"),
        ("5", "summary"),
    ]
    assert await embedded_stack.drain() == 3
    tickets = await by_source_key(embedded_stack)
    assert set(tickets) == {"JL-1", "JL-2", "JL-4"}
    paid_twice = await ticket_of(embedded_stack, tickets["JL-2"])
    assert paid_twice["status"] == "closed" and paid_twice["received_at"] == "2025-06-18T01:40:00Z"


async def test_rows_without_a_call_id_are_identified_by_their_content(
    embedded_stack: Stack,
) -> None:
    path = fixture(embedded_stack, "no_call_id.csv")
    code, first, _ = await import_calls(embedded_stack, path, "--vendor", "api")
    assert (code, first["imported"], first["duplicates"]) == (0, 2, 1)
    assert await embedded_stack.drain() == 2
    code, again, _ = await import_calls(embedded_stack, path, "--vendor", "api")
    assert (code, again["imported"], again["duplicates"]) == (0, 0, 3)
    keys = await by_source_key(embedded_stack)
    assert all(key.startswith("row-") for key in keys)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("empty.csv", "is empty"),
        ("binary.csv", "is a binary file"),
        ("export.xlsx", "is an Excel workbook (.xlsx)"),
        ("missing_columns.csv", "has no column 通话开始时间 (started_at)"),
    ],
)
async def test_a_file_that_cannot_be_imported_exits_2_with_a_clear_message(
    embedded_stack: Stack, name: str, message: str
) -> None:
    path = fixture(embedded_stack, name)
    code, summary, err = await import_calls(embedded_stack, path)
    assert code == 2
    assert summary == {}
    assert f"{path}: {message}" in err
    assert await embedded_stack.rt.queue.depth(embedded_stack.rt.names.drafts) == 0


async def test_a_missing_file_and_an_unknown_vendor_exit_2(embedded_stack: Stack) -> None:
    code, _, err = await import_calls(embedded_stack, embedded_stack.tmp_path / "nope.csv")
    assert code == 2 and "cannot be read" in err
    path = fixture(embedded_stack, "callcentre_gbk.csv")
    code, _, err = await import_calls(embedded_stack, path, "--vendor", "acme")
    assert code == 2 and "unknown vendor 'acme'" in err and "callcentre" in err


async def test_undecodable_bytes_deep_in_a_utf8_file_reject_only_their_row(
    embedded_stack: Stack,
) -> None:
    path = embedded_stack.tmp_path / "mixed.csv"
    write_export(path, 600, encoding="utf-8", run="U")  # > 64 KiB: detection sees only UTF-8
    good = path.read_bytes()
    assert len(good) > 64 * 1024
    cells = [
        "U999999999",
        "13812340000",
        "",
        "96116",
        "1001",
        "2025-06-20 10:00:00",
        "",
        "呼入",
        "R9",
        "1",
        "停水",
        "GBK",
        "",
        "",
        "",
        "",
        "派单",
        "",
        "",
    ]
    assert len(cells) == 19
    gbk = "自来水发黄有异味".encode("gbk")
    with pytest.raises(UnicodeDecodeError):
        gbk.decode("utf-8")
    bad_row = ",".join(cells).encode().replace(b"GBK", gbk) + b"\r\n"
    path.write_bytes(good + bad_row)
    code, summary, _ = await import_calls(embedded_stack, path)
    assert (code, summary["imported"], summary["rejected"]) == (1, 600, 1)
    [error] = error_rows(Path(summary["error_report"]))
    assert error == {"row": "602", "field": "row", "reason": "not valid utf-8-sig text"}


async def test_the_progress_bar_shows_on_a_terminal_and_not_otherwise(
    embedded_stack: Stack,
) -> None:
    path = embedded_stack.tmp_path / "progress.csv"
    write_export(path, 2000)
    code, _, err = await import_calls(embedded_stack, path, "--batch-size", "100")
    assert code == 0 and "import-calls:" not in err, "no bar when stderr is not a terminal"

    code, seen, out = await asyncio.to_thread(
        _on_a_terminal,
        embedded_stack.shouli_command("import-calls", str(path), "--batch-size", "100"),
        embedded_stack.process_env(),
        embedded_stack.tmp_path,
    )
    assert code == 0
    bar = seen.decode(errors="replace")
    assert "import-calls:" in bar and "rows=2000" in bar and "rows_s=" in bar
    assert "B/s" in bar or "kB/s" in bar or "KB/s" in bar, "a rate"
    assert "<" in bar, "an ETA (elapsed<remaining)"
    # No router ran: the first import's calls are still queued, so they are queued again.
    assert "2000 rows" in out


@pytest.mark.slow
async def test_reimport_while_the_router_is_killed_keeps_exact_counts(stack: Stack) -> None:
    rows = 3000
    path = stack.tmp_path / "big.csv"
    write_export(path, rows, run="K")
    env = stack.process_env() | {"SHOULI_WORKER__BATCH_SIZE": "25"}

    def start_router(log: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            stack.shouli_command("worker", "router"),
            env=env,
            cwd=stack.tmp_path,
            stdout=(stack.tmp_path / log).open("wb"),
            stderr=subprocess.STDOUT,
        )

    router = start_router("router-1.log")
    importing = asyncio.create_task(import_calls(stack, path, "--batch-size", "100"))
    try:
        assert await stack.wait_until(lambda: _at_least(stack, 200), timeout=120), (
            stack.tmp_path / "router-1.log"
        ).read_text(errors="replace")[-2000:]
    finally:
        router.send_signal(signal.SIGKILL)
        router.wait(10)
    code, first, _ = await importing
    at_kill = await stack.ticket_count()
    assert code == 0 and first["imported"] == rows
    assert at_kill < rows, "the kill must land while calls are still in flight"

    # The operator, unsure what happened, imports the same file again with no router running.
    code, again, _ = await import_calls(stack, path, "--batch-size", "100")
    assert code == 0
    assert again["duplicates"] >= at_kill and again["imported"] + again["duplicates"] == rows

    router = start_router("router-2.log")
    try:
        assert await stack.wait_for_tickets(rows, timeout=240) == rows
        assert await stack.wait_until(lambda: _drained(stack), timeout=120)
        await asyncio.sleep(1.0)
    finally:
        router.send_signal(signal.SIGTERM)
        assert router.wait(60) == 0
    async with stack.rt.database.sessions() as session:
        total = (await session.execute(select(func.count()).select_from(Ticket))).scalar_one()
        keys = (
            await session.execute(select(func.count(func.distinct(Ticket.source_key))))
        ).scalar_one()
        numbers = (
            await session.execute(select(func.count(func.distinct(Ticket.number))))
        ).scalar_one()
    assert (total, keys, numbers) == (rows, rows, rows)


@pytest.mark.slow
def test_a_large_export_streams_in_bounded_memory(tmp_path: Path) -> None:
    """Peak RSS of the import process barely grows from 20,000 to 120,000 rows."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SHOULI_")},
        "SHOULI_CONFIG": str(Path(__file__).resolve().parent.parent / "config.yaml"),
        "SHOULI_LOGGING__FORMAT": "json",
    }
    peaks = {}
    for rows in (20_000, 120_000):
        workdir = tmp_path / str(rows)
        workdir.mkdir()
        path = workdir / "export.csv"
        write_export(path, rows, run=f"M{rows}")
        process = subprocess.Popen(
            [*_cli(), "import-calls", str(path), "--json", "--no-progress"],
            env=env | {"SHOULI_DATABASE__URL": f"sqlite+aiosqlite:///{workdir}/s.db"},
            cwd=workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert process.stdout is not None
        summary = json.loads(process.stdout.read().decode().strip().splitlines()[-1])
        _, status, usage = os.wait4(process.pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert summary["imported"] == rows
        peaks[rows] = usage.ru_maxrss / 1024  # MiB
    growth = peaks[120_000] - peaks[20_000]
    assert growth < 25, f"peak RSS grew {growth:.1f} MiB for 100,000 more rows ({peaks})"


def _on_a_terminal(command: list[str], env: dict[str, str], cwd: Path) -> tuple[int, bytes, str]:
    """Run ``command`` with stderr on a pseudo-terminal (no size set, as in some CI runners);
    (exit code, what the terminal showed, stdout)."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=follower)
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    assert process.stdout is not None
    out = process.stdout.read().decode()
    return process.wait(60), seen, out


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8-sig")


def _exists(path: Path) -> bool:
    return path.exists()


def _cli() -> list[str]:
    import sys

    return [sys.executable, "-m", "ingest.app.cli"]


async def _at_least(stack: Stack, count: int) -> bool:
    return await stack.ticket_count() >= count


async def _drained(stack: Stack) -> bool:
    return await stack.rt.queue.depth(stack.rt.names.drafts) == 0
