"""The referral channel (issue 6): work orders from upstream authorities and replies back.

* ``routes``: ``POST /api/referrals/{source}`` (signed webhook) and ``POST /api/letters``
  (letters, visits and faxes registered by staff, with scans);
* ``signature``: the HMAC scheme for both directions, the clock and the replay guard;
* ``payload`` / ``mapping``: a JSON or XML payload read through the source's mapping;
* ``orders``: one work order, one ticket; updates (催办, 延期, 撤单, 退单, 督办) change it;
* ``dropfolder``: order files delivered into a watched directory;
* ``replies``: the outbox of replies and sign-for confirmations, sent by ``workers.referrals``.

Mail-borne referrals (a referral mailbox read through the email channel, sender allowlists,
DKIM) are not here yet: they need ``channels/email``; ``orders.ReferralIntake.receive`` is the
entry point they will call with the mail's body or attached order file.
"""
