"""A source's drop folder, read by the referrals worker: complete files only, processed/ and
failed/ with the reason, duplicates harmless."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from channels.referral.dropfolder import is_temporary
from channels.runtime import Runtime
from tests.stack import Stack, events, ticket_of
from tests.support_http import api_client
from tests.test_referral_support import (  # noqa: F401  (fixtures)
    FIXTURES,
    order,
    post_signed,
    referral_secrets,
    referrals_worker,
    runtime_with,
    source_changes,
)


def _folder_runtime(stack: Stack, folder: Path, min_age: float = 0.0) -> Runtime:
    return runtime_with(
        stack.rt,
        sources=source_changes(stack.rt, "gov12345", drop_folder=folder),
        drop_folder_min_age_seconds=min_age,
    )


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)


def _order_bytes(**changes: str) -> bytes:
    return json.dumps(order(**changes), ensure_ascii=False).encode()


def test_temporary_names_are_never_picked_up() -> None:
    for name in (
        "order.json.part",
        "order.json.tmp",
        ".order.json",
        "order.json~",
        "~order.json",
        "order.JSON.PART",
        "order.xml.filepart",
        "order.json.crdownload",
    ):
        assert is_temporary(name), name
    for name in ("order.json", "SZ12345-1.xml", "order.part.json"):
        assert not is_temporary(name), name


async def test_a_half_written_file_is_left_alone_until_it_is_renamed_complete(
    embedded_stack: Stack, tmp_path: Path
) -> None:
    folder = tmp_path / "drop"
    worker = referrals_worker(embedded_stack, _folder_runtime(embedded_stack, folder))
    try:
        await worker.sweep()  # creates the folders
        data = _order_bytes()
        partial = folder / "SZ12345-000871.json.part"
        _write(partial, data[: len(data) // 2])
        _write(folder / ".SZ12345-000872.json", data[:10])
        sweep = await worker.sweep()
        assert sweep.files == {}
        assert partial.exists() and not list((folder / "failed").iterdir())
        with partial.open("ab") as handle:
            handle.write(data[len(data) // 2 :])
        os.replace(partial, folder / "SZ12345-000871.json")
        sweep = await worker.sweep()
    finally:
        await worker.close()
    assert sweep.files == {"gov12345": ["SZ12345-000871.json"]}
    assert (folder / "processed" / "SZ12345-000871.json").read_bytes() == data
    assert (folder / ".SZ12345-000872.json").exists(), "dotfiles stay where they are"
    assert await embedded_stack.drain() == 1


async def test_a_file_written_in_place_waits_until_it_stopped_changing(
    embedded_stack: Stack, tmp_path: Path
) -> None:
    folder = tmp_path / "drop"
    worker = referrals_worker(embedded_stack, _folder_runtime(embedded_stack, folder, min_age=30.0))
    try:
        await worker.sweep()
        path = folder / "inplace.json"
        _write(path, _order_bytes()[:40])
        assert (await worker.sweep()).files == {}
        _write(path, _order_bytes())
        old = time.time() - 60
        os.utime(path, (old, old))
        # Old enough now, but larger than at the last look: one more look first.
        assert (await worker.sweep()).files == {}
        assert (await worker.sweep()).files == {"gov12345": ["inplace.json"]}
    finally:
        await worker.close()
    assert not list((folder / "failed").iterdir())


async def test_a_malformed_file_goes_to_failed_with_an_error_text_naming_the_fields(
    embedded_stack: Stack, tmp_path: Path
) -> None:
    folder = tmp_path / "drop"
    worker = referrals_worker(embedded_stack, _folder_runtime(embedded_stack, folder))
    try:
        await worker.sweep()
        shutil.copy(FIXTURES / "gov12345-malformed.json", folder / "bad-fields.json")
        _write(folder / "broken.json", '{"工单编号": "X", '.encode())
        _write(folder / "readme.txt", b"not an order")
        sweep = await worker.sweep()
    finally:
        await worker.close()
    assert sorted(sweep.files["gov12345"]) == ["bad-fields.json", "broken.json", "readme.txt"]
    failed = folder / "failed"
    why = (failed / "bad-fields.json.error.txt").read_text(encoding="utf-8")
    assert "诉求类型: unknown request type '抱怨'" in why
    assert "办结时限: '2026年11月27日' is not a date and time" in why
    assert "是否保密:" in why
    assert "not valid JSON" in (failed / "broken.json.error.txt").read_text(encoding="utf-8")
    assert "not an order file" in (failed / "readme.txt.error.txt").read_text(encoding="utf-8")
    assert (failed / "bad-fields.json").exists() and not list((folder / "processed").iterdir())
    assert await embedded_stack.rt.queue.depth(embedded_stack.rt.names.drafts) == 0


async def test_a_duplicate_order_file_is_processed_without_a_second_ticket(
    stack: Stack, tmp_path: Path
) -> None:
    folder = tmp_path / "drop"
    worker = referrals_worker(stack, _folder_runtime(stack, folder))
    try:
        await worker.sweep()
        _write(folder / "order.json", _order_bytes())
        _write(folder / "order-again.json", _order_bytes())
        first = await worker.sweep()
        _write(folder / "order.json", _order_bytes())  # the SFTP client sent it once more
        second = await worker.sweep()
    finally:
        await worker.close()
    assert sorted(first.files["gov12345"]) == ["order-again.json", "order.json"]
    assert second.files == {"gov12345": ["order.json"]}
    processed = sorted(p.name for p in (folder / "processed").iterdir())
    assert processed == ["order-again.json", "order.1.json", "order.json"]
    assert await stack.drain(stop=True) == 1
    assert await stack.ticket_count() == 1


async def test_an_xml_order_file_and_its_update_file_reach_the_same_ticket(
    embedded_stack: Stack, tmp_path: Path
) -> None:
    folder = tmp_path / "drop"
    worker = referrals_worker(embedded_stack, _folder_runtime(embedded_stack, folder))
    try:
        await worker.sweep()
        shutil.copy(FIXTURES / "gov12345-order.xml", folder / "SZ12345-000902.xml")
        await worker.sweep()
        assert await embedded_stack.drain() == 1
        urge = (
            "<工单><工单编号>SZ12345-20261124-000902</工单编号><操作类型>督办</操作类型>"
            "<说明>纪检监察部门请从严核查</说明></工单>"
        )
        _write(folder / "SZ12345-000902-db.xml", urge.encode())
        sweep = await worker.sweep()
    finally:
        await worker.close()
    assert sweep.files == {"gov12345": ["SZ12345-000902-db.xml"]}
    number = embedded_stack.rt.settings.organisation.number_prefix
    from sqlalchemy import select

    from store.models import Ticket

    async with embedded_stack.rt.database.sessions() as session:
        (found,) = (await session.execute(select(Ticket.number))).scalars().all()  # type: ignore[call-overload]
    assert found.startswith(number)
    ticket = await ticket_of(embedded_stack, found)
    assert ticket["category"] == "misconduct" and ticket["department"] == "discipline"
    assert ticket["severity"] == "major"
    assert events(ticket, "referral_supervised")


async def test_files_left_in_processing_by_a_dead_worker_are_put_back(
    embedded_stack: Stack, tmp_path: Path
) -> None:
    folder = tmp_path / "drop"
    (folder / "processing").mkdir(parents=True)
    _write(folder / "processing" / "orphan.json", _order_bytes())
    worker = referrals_worker(embedded_stack, _folder_runtime(embedded_stack, folder))
    try:
        sweep = await worker.sweep()
    finally:
        await worker.close()
    assert sweep.files == {"gov12345": ["orphan.json"]}
    assert (folder / "processed" / "orphan.json").exists()


async def test_an_unusable_drop_folder_does_not_stop_the_other_steps(
    embedded_stack: Stack, tmp_path: Path
) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the folder should be", encoding="utf-8")
    worker = referrals_worker(embedded_stack, _folder_runtime(embedded_stack, blocked))
    try:
        with pytest.raises(OSError):
            await worker.sweep()  # strict, as in tests: the failure is raised
        async with api_client(embedded_stack.rt) as client:
            assert (await post_signed(client, order())).status_code == 201
        assert await embedded_stack.drain() == 1
        sweep = await worker.sweep(strict=False)  # as the running worker does
    finally:
        await worker.close()
    assert sweep.registered == 1, "registration went on while the drop folder failed"
