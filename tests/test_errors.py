"""The exception tree drawn in ingest/errors.py is the one the code has."""

from __future__ import annotations

import re
from importlib import import_module

import pytest

from ingest import errors
from ingest.errors import Interrupted, Misconfigured, Refused, ShouliError, Unavailable

# Where each error of the tree is defined.
HOMES = {
    "QueueUnavailable": "ingest.queue",
    "StoreUnavailable": "store.db",
    "HandoffUnavailable": "channels.email.imap",
    "ImapUnavailable": "channels.email.imap_session",
    "FormReadError": "channels.web.uploads",
    "FileProblem": "channels.hotline.sources",
    "SignatureRejected": "channels.referral.signature",
    "MappingError": "channels.referral.mapping",
    "MailOrderError": "channels.referral.mail_orders",
    "LifecycleError": "router.lifecycle",
    "ConfigError": "ingest.sections",
    "ImportInterrupted": "channels.hotline.importer",
    "BodyRefused": "ingest.bodies",
    "PayloadError": "channels.referral.payload",
    "UnknownOrder": "channels.referral.orders",
    "UnknownWorker": "workers.registry",
    "DuplicateName": "ingest.registry",
}
BRANCH = {
    "QueueUnavailable": Unavailable,
    "StoreUnavailable": Unavailable,
    "HandoffUnavailable": Unavailable,
    "ImapUnavailable": Unavailable,
    "FormReadError": Refused,
    "FileProblem": Refused,
    "SignatureRejected": Refused,
    "MappingError": Refused,
    "MailOrderError": Refused,
    "LifecycleError": Refused,
    "ConfigError": Misconfigured,
    "ImportInterrupted": Interrupted,
    "BodyRefused": Refused,
    "PayloadError": Refused,
    "UnknownOrder": Refused,
    "UnknownWorker": Misconfigured,
    "DuplicateName": Misconfigured,
}


@pytest.mark.parametrize("name", sorted(HOMES))
def test_each_error_sits_on_its_branch_of_the_tree(name: str) -> None:
    error = getattr(import_module(HOMES[name]), name)
    assert issubclass(error, BRANCH[name]) and issubclass(error, ShouliError)
    assert not any(issubclass(error, other) for other in {*BRANCH.values()} - {BRANCH[name]})


def test_the_branches_do_not_overlap_and_the_drawing_names_them() -> None:
    branches = (Unavailable, Refused, Misconfigured, Interrupted)
    for branch in branches:
        assert branch.__bases__ == (ShouliError,)
        assert re.search(rf"├── {branch.__name__}|└── {branch.__name__}", errors.__doc__ or "")
