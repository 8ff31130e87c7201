"""Prometheus metrics, in a registry of their own passed to whoever counts something."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.drafts_published = Counter(
            "shouli_drafts_published_total",
            "Drafts durably handed off",
            ["channel"],
            registry=self.registry,
        )
        self.tickets_created = Counter(
            "shouli_tickets_created_total",
            "Tickets created",
            ["channel", "status"],
            registry=self.registry,
        )
        self.duplicates = Counter(
            "shouli_duplicate_drafts_total",
            "Drafts that matched an existing ticket (redelivery or re-sent item)",
            ["channel"],
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "shouli_dead_letters_total",
            "Messages moved to dead letters",
            ["queue"],
            registry=self.registry,
        )
        self.intake_to_commit = Histogram(
            "shouli_intake_to_commit_seconds",
            "From a draft's received_at to its ticket's commit",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "shouli_router_batch_size",
            "Drafts per router transaction",
            buckets=(1, 2, 5, 10, 25, 50, 100, 200, 500, 1000),
            registry=self.registry,
        )
        self.component_up = Gauge(
            "shouli_component_up",
            "1 when a dependency answers",
            ["component"],
            registry=self.registry,
        )
        self.imap_up = Gauge(
            "shouli_imap_up",
            "1 when the IMAP mailbox's last poll succeeded, 0 while it is down",
            ["mailbox"],
            registry=self.registry,
        )
        self.imap_messages = Counter(
            "shouli_imap_messages_total",
            "IMAP messages by outcome (processed, not_a_complaint, failed, retry)",
            ["mailbox", "outcome"],
            registry=self.registry,
        )
        self.imap_poll_failures = Counter(
            "shouli_imap_poll_failures_total",
            "IMAP polls that stopped (unreachable, login_rejected, protocol, handoff, ...)",
            ["mailbox", "reason"],
            registry=self.registry,
        )
        self.notifications = Counter(
            "shouli_notifications_total",
            "Notification attempts (acknowledgements, urge notices) by outcome: sent, retry, dead",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.clocks = Gauge(
            "shouli_clocks",
            "Running clocks (时限) by department and state: due_soon (inside the warning lead "
            "time) or breached (past due)",
            ["department", "state"],
            registry=self.registry,
        )

    def set_clocks(self, counts: dict[tuple[str, str], int]) -> None:
        # Cleared first: a department whose clocks are all fine again must drop to nothing.
        self.clocks.clear()
        for (department, state), count in counts.items():
            self.clocks.labels(department=department, state=state).set(count)

    def render(self) -> bytes:
        return generate_latest(self.registry)
