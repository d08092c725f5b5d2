"""Nodes witness each other's audit logs over C2SP tlog-witness (DESIGN §8, docs/witness.md).

* :mod:`~broker.witness.protocol` — the wire format of ``add-checkpoint`` (request body, checkpoint text),
  pure functions with no database, so a second implementation can be checked against them.
* :mod:`~broker.witness.service` — this node as a witness of its peers: verify, check the consistency
  proof against the size it last cosigned for that origin, cosign (``cosignature/v1``), store its state.
* :mod:`~broker.witness.submit` — this node as a log: send each new checkpoint to every peer's witness,
  verify and keep the cosignatures they return.
* :mod:`~broker.witness.gossip` — compare what the peers' witnesses cosigned with what this one did:
  two signed checkpoints of one size, or an inconsistent pair, are alerts.
* :mod:`~broker.witness.api` — the HTTP edge (``/v1/witness/...``).
"""
