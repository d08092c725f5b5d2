"""Statistics of the exchange: Art. 18 of Directive (EU) 2023/977 and the cooperation dashboard.

* :mod:`~broker.stats.period` — the period asked for (``year``, or ``from``/``to``), refused when unparseable,
  empty or reversed;
* :mod:`~broker.stats.service` — every figure, as grouped SQL over routing metadata and decisions (never
  content); :mod:`~broker.stats.models` — the documents;
* :mod:`~broker.stats.access` — who sees which contact point's figures;
* :mod:`~broker.stats.export` — JSON, CSV and printable HTML; :mod:`~broker.stats.peers` — the signed
  aggregates nodes publish to each other;
* :mod:`~broker.stats.api`, :mod:`~broker.stats.cli` — the HTTP and command-line edges.

docs/statistics.md defines each figure; the code follows it.
"""
