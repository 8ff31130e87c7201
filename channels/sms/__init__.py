"""SMS to complainants who left a phone number: the acknowledgement (number, deadline,
progress link) when the ticket is made, and the result when staff feed it back by SMS.

* ``settings``: the ``sms:`` section (provider, templates, quiet hours, opt-out);
* ``texts``: the message of each kind from its template;
* ``providers``: a generic signed HTTP gateway and Alibaba Cloud's SendSms API;
* ``notices``: the rows queued in the one notification outbox, sent by the ``notify`` worker.
"""
