"""The hotline channel (热线电话): call records from agents and call-centre exports.

* ``records``: the call record (one call, as an agent files it or an export row holds it) and
  the ticket draft it becomes;
* ``api``: ``POST /api/calls`` for agents (Bearer token bound to an agent and team);
* ``sources`` / ``rows`` / ``importer``: ``shouli import-calls FILE`` (the command itself is in
  ``ingest/app/import_calls.py``);
* ``settings``: the ``hotline:`` section of ``config.yaml``.

Repeat callers (重复投诉) are decided by ``router/repeats.py``, which the edge runs
synchronously for calls so the agent hears at once that a ticket is already open.

Importing this package must stay cheap: ``channels.settings`` imports ``settings`` from here.
"""
