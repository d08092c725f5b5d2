"""The tamper-evident exchange log (DESIGN §6): entries, an RFC 9162 Merkle tree, signed checkpoints, witnesses.

* :mod:`~broker.audit.service` — ``record()`` an entry in the caller's transaction; the sequencer that
  gives entries consecutive positions under one lock; ``verify_log()``.
* :mod:`~broker.audit.merkle` — RFC 9162 hashing, proof shapes and verification (pure).
* :mod:`~broker.audit.tree` — the stored tree: every complete subtree, roots and proofs in O(log n) reads.
* :mod:`~broker.audit.checkpoints` — C2SP checkpoint notes signed by the log key, never inconsistent.
* :mod:`~broker.audit.witness` — contact points cosign (``cosignature/v1``) what they checked; forks.
* :mod:`~broker.audit.alerts` — forks and inconsistencies, recorded and raised once.
* :mod:`~broker.audit.verify` — full recomputation of the stored log.
* :mod:`~broker.audit.search` — auditors' scope and search; :mod:`~broker.audit.export` and
  :mod:`~broker.audit.bundle` — bundles and their offline verification.
* :mod:`~broker.audit.api`, :mod:`~broker.audit.cli` — the HTTP and command-line edges;
  :mod:`~broker.audit.bench` — figures for the benchmark.

Only this package writes the audit tables.
"""
