"""The one exception tree: who is at fault, and so what each boundary answers.

::

    ShouliError
    ├── Unavailable            ours or the infrastructure's, for now: try again later
    │   ├── QueueUnavailable       ingest.queue      the broker or embedded queue
    │   ├── StoreUnavailable       store.db          the database
    │   ├── HandoffUnavailable     channels.email    a polled mail could not be queued
    │   └── ImapUnavailable        channels.email    the mailbox server
    ├── Refused                the sender's fault: the same input fails the same way again
    │   ├── BodyRefused            ingest.bodies     too large, too deep, not JSON
    │   ├── FormReadError          channels.web      an unreadable form or upload
    │   ├── FileProblem            channels.hotline  an unreadable call-centre export
    │   ├── SignatureRejected      channels.referral a webhook not signed by its source
    │   ├── PayloadError, MappingError, MailOrderError, UnknownOrder    channels.referral
    │   └── LifecycleError         router.lifecycle  an action the ticket's status forbids
    ├── Misconfigured          ours, at start-up: the process must not start
    │   ├── ConfigError            ingest.sections   (ConfigNotFound: ingest.app.settings)
    │   └── DuplicateName, UnknownName (UnknownWorker)   ingest.registry: a registry's names
    ├── Interrupted            an operator stopped a long command (Ctrl-C of import-calls)
    └── ApiError               ingest.api        an HTTP answer already decided (status, code)

Library errors are mapped where they cross into our code, once per boundary:

=================  ===================  ==============  ============================
what happened      SMTP edge            HTTP edge       queue worker
=================  ===================  ==============  ============================
Unavailable        451 (try again)      503 Retry-After retry with backoff, no ack
Refused            550 / 552 / 554      4xx with code   dead letter at once, reason
store outage       451                  503             retry (``store.db.is_outage``)
store refusal      451                  503             dead letter at once, reason
bug (other)        451                  500             dead letter, reason, logged
=================  ===================  ==============  ============================

A raw database error is sorted by :func:`store.db.is_outage`, the one place that knows the
drivers' codes; an edge answers "try again later" to either kind, since it has nowhere to
keep an item it could not store, and a success answer only ever follows a durable hand-off.
"""

from __future__ import annotations


class ShouliError(Exception):
    """Every error of ours."""


class Unavailable(ShouliError):
    """A dependency is not there right now; the same work will succeed later."""


class Refused(ShouliError):
    """The input is at fault; retrying it unchanged cannot help."""


class Misconfigured(ShouliError):
    """The configuration cannot work; found at start-up, before anything is accepted."""


class Interrupted(ShouliError):
    """An operator stopped the work; what was done so far is kept."""
