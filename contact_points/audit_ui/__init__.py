"""The auditors' web pages (search, exchange timeline, checkpoints, export), over ``broker.audit``."""
