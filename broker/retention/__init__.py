"""Retention: how long an exchange's content is kept, legal holds, the irrevocable deletion of content past its
period, and the compliance review queue (docs/retention.md).

* ``exchanges`` — what an *exchange* is (a conversation), when it ended, whose it is, which are due;
* ``deletion`` — deleting the content of exchanges, set-based, leaving the routing metadata and the audit log;
* ``service`` — holds, reviews and the sweep, each audited (refusals too);
* ``api`` — ``/v1/retention``.
"""
