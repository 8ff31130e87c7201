"""A department's own work-order system (工单系统): every ticket dispatched to a department
with a ``webhook`` is POSTed there, signed, through the one notification outbox.

* ``notices``: a sweep of dispatch events queues a ``work_order`` row per dispatch;
* ``sender``: the signed POST, its answer mapped to sent / retry / dead letter.
"""
