"""The referral channel (issue 6): work orders from upstream authorities and replies back.

* ``routes``: ``POST /api/referrals/{source}`` (signed webhook) and ``POST /api/letters``
  (letters, visits and faxes registered by staff, with scans);
* ``signature``: the HMAC scheme for both directions, the clock and the replay guard;
* ``payload`` / ``mapping``: a JSON or XML payload read through the source's mapping;
* ``orders``: one work order, one ticket; updates (催办, 延期, 撤单, 退单, 督办) change it;
* ``dropfolder``: order files delivered into a watched directory;
* ``mail`` (with ``dkim_check`` and ``mail_orders``): orders mailed to a referral mailbox by
  a source's allowlisted senders, DKIM checked; anything else there is a flagged complaint;
* ``outbox`` / ``sender`` / ``reply_mail``: replies and sign-for confirmations, sent by
  ``workers.referrals`` as a signed webhook or a mail.
"""
