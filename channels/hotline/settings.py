"""The ``hotline:`` section of ``config.yaml``: agents and their tokens, vendor export
mappings and the phone region (the repeat rule is the router's: ``repeats:``).

Pure pydantic on purpose: ``channels.settings`` imports this module, so it must not import
anything of the service (store, router, queue) itself.
"""

from __future__ import annotations

import codecs
import re
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import Field, field_validator, model_validator

from ingest.phone import known_region
from ingest.references import KnownKeys
from ingest.sections import Section, env_secret

# The fields of a call record that an export column (or a JSON-lines key) can fill; the
# names are those of ``POST /api/calls`` (channels/hotline/records.py, CallRecord).
IMPORT_FIELDS: tuple[str, ...] = (
    "call_id",
    "caller_number",
    "contact_number",
    "hotline_number",
    "agent_id",
    "started_at",
    "ended_at",
    "duration_seconds",
    "direction",
    "recording_ref",
    "ivr_path",
    "category",
    "summary",
    "request",
    "complainant_name",
    "complainant_address",
    "account_number",
    "outcome",
    "resolution",
    "answer_code",
    "dissatisfied",
)
# An export without these columns cannot be imported at all (exit 2, naming them); a row with
# one of them empty is rejected on its own. ``call_id`` is not among them: without it the row's
# content hash is its identity.
REQUIRED_COLUMNS: tuple[str, ...] = ("caller_number", "agent_id", "started_at", "summary")

# ``--vendor api``: an export whose headers are the API's field names (IMPORT_FIELDS).
API_VENDOR = "api"

Outcome = Literal["resolved", "dispatch"]
Direction = Literal["inbound", "outbound"]


class HotlineAgent(Section):
    """An agent (坐席) who may file calls; the token is bound to this id and team."""

    id: str = Field(min_length=1, max_length=200, description="agent id (坐席工号)")
    name: str | None = Field(default=None, max_length=200)
    department: str = Field(description="the agent's team: a configured department key")
    token: str | None = Field(default=None, min_length=16)
    token_env: str | None = Field(default=None, description="environment variable with the token")

    def secret(self) -> str | None:
        return env_secret(self.token_env, self.token)


class VendorMapping(Section):
    """How one call-centre system's export names things. Exports differ per vendor."""

    columns: dict[str, str] = Field(
        description="record field -> column header in the export (or key in JSON lines)"
    )
    delimiter: str | None = Field(default=None, description="None: detect , TAB ; |")
    encoding: str | None = Field(
        default=None, description="None: detect UTF-8 (with or without BOM), GB18030/GBK, UTF-16"
    )
    timezone: str | None = Field(
        default=None, description="zone of times written without an offset; None: organisation's"
    )
    time_formats: tuple[str, ...] = Field(
        default=(), description="strptime formats tried before the built-in ones"
    )
    default_department: str | None = Field(
        default=None, description="team of agents in the export who are not in hotline.agents"
    )
    category_values: dict[str, str] = Field(
        default_factory=dict, description="the export's category label -> category key"
    )
    outcome_values: dict[str, Outcome] = Field(
        default_factory=dict, description="added to the built-in 直接办结/派单 table"
    )
    direction_values: dict[str, Direction] = Field(
        default_factory=dict, description="added to the built-in 呼入/呼出 table"
    )

    @field_validator("columns")
    @classmethod
    def _known_fields(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(IMPORT_FIELDS))
        if unknown:
            raise ValueError(
                f"unknown record field(s) {', '.join(unknown)}; known: {', '.join(IMPORT_FIELDS)}"
            )
        headers = [h.strip() for h in value.values()]
        if any(not h for h in headers):
            raise ValueError("a column header must not be empty")
        if len(set(headers)) != len(headers):
            raise ValueError("two fields are mapped to the same column")
        return value

    @field_validator("delimiter")
    @classmethod
    def _one_character(cls, value: str | None) -> str | None:
        if value is not None and len(value) != 1:
            raise ValueError("one character, e.g. ',' or '\\t'")
        return value

    @field_validator("encoding")
    @classmethod
    def _known_codec(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                codecs.lookup(value)
            except LookupError as exc:
                raise ValueError(f"unknown encoding {value!r} (e.g. utf-8, gb18030)") from exc
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except Exception as exc:
                raise ValueError(f"unknown time zone {value!r} (e.g. Asia/Shanghai)") from exc
        return value

    @field_validator("time_formats")
    @classmethod
    def _strptime_formats(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for fmt in value:
            if not re.search(r"%[YmdHMS]", fmt):
                raise ValueError(f"{fmt!r} is not a strptime format like '%Y-%m-%d %H:%M:%S'")
        return value

    @model_validator(mode="after")
    def _required_columns(self) -> VendorMapping:
        missing = [f for f in REQUIRED_COLUMNS if f not in self.columns]
        if missing:
            raise ValueError(f"columns must map {', '.join(missing)}")
        return self


def identity_mapping() -> VendorMapping:
    """The mapping of an export that uses the API's own field names as its headers."""
    return VendorMapping(columns={name: name for name in IMPORT_FIELDS})


class HotlineSettings(Section):
    default_region: str = Field(default="CN", description="region of numbers without +country")
    agents: tuple[HotlineAgent, ...] = ()
    vendors: dict[str, VendorMapping] = Field(default_factory=dict)
    default_vendor: str | None = Field(default=None, description="import-calls without --vendor")
    import_batch_size: int = Field(default=500, ge=1, le=5000)

    _known_region = field_validator("default_region")(known_region)

    @field_validator("vendors")
    @classmethod
    def _vendor_names(cls, value: dict[str, VendorMapping]) -> dict[str, VendorMapping]:
        for name in value:
            if not re.fullmatch(r"[a-z][a-z0-9_-]*", name):
                raise ValueError(f"vendor name {name!r}: lower case letters, digits, _ and -")
        return value

    def agent(self, agent_id: str) -> HotlineAgent | None:
        return next((a for a in self.agents if a.id == agent_id), None)

    def vendor(self, name: str | None) -> VendorMapping:
        """The named mapping; without a name the default vendor. ``api`` (unless configured)
        and no name without a default vendor: the API's own field names as headers."""
        name = name or self.default_vendor
        if name in self.vendors:
            return self.vendors[name]
        if name in (None, API_VENDOR):
            return identity_mapping()
        raise KeyError(name)

    def vendor_names(self) -> list[str]:
        return sorted({*self.vendors, API_VENDOR})

    def cross_reference_problems(self, known: KnownKeys) -> list[tuple[str, str]]:
        """Names that must point at other sections (called by channels.settings)."""
        problems: list[tuple[str, str]] = []
        seen: dict[str, int] = {}
        for index, agent in enumerate(self.agents):
            where = f"hotline.agents.{index}"
            if agent.id in seen:
                problems.append((f"{where}.id", f"duplicate agent {agent.id!r}"))
            seen.setdefault(agent.id, index)
            problems.extend(known.department(f"{where}.department", agent.department))
            if not agent.token and not agent.token_env:
                problems.append((where, "give token_env (preferred) or token"))
        inline = [a.token for a in self.agents if a.token]
        if len(set(inline)) != len(inline):
            problems.append(("hotline.agents", "two agents share a token; give each its own"))
        if self.default_vendor is not None and self.default_vendor not in self.vendor_names():
            problems.append(
                (
                    "hotline.default_vendor",
                    f"unknown vendor {self.default_vendor!r} "
                    f"(known: {', '.join(self.vendor_names())})",
                )
            )
        for name, vendor in self.vendors.items():
            where = f"hotline.vendors.{name}"
            problems.extend(
                known.department(f"{where}.default_department", vendor.default_department)
            )
            problems.extend(known.categories_in(f"{where}.category_values", vendor.category_values))
        return problems
