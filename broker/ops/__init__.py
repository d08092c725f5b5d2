"""What an operator watches: Prometheus metrics, structured logs, and the ``/health`` and ``/ready`` probes.

- ``metrics``: the per-process counters and histograms (one module names them all) and how a scrape
  reads them, across processes (``PROMETHEUS_MULTIPROC_DIR``).
- ``state``: the gauges read from the database and the queue at scrape time (messages by state, queues,
  outbox lag, the audit log's progress, alerts, endpoint reachability).
- ``http``: the ASGI middleware that counts and times every request by route template and writes its
  access log line.
- ``logs``: JSON (or text) log lines carrying the request id that the request's audit entries carry.
- ``access``: who may read ``/metrics`` (allowed networks, or a bearer token).
- ``ready``: the readiness checks (database, queue, keys).
- ``api``: the routes; ``server``: a worker's own metrics port.

docs/operations.md is the operator's guide to all of it.
"""
