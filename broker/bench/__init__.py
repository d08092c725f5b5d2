"""``spoc bench``: the exchange's speed measured on the real stack, next to this machine's own limits.

Everything is measured in the same run on the same machine, so the ratios mean something: a figure for
the exchange is only interesting next to what the hardware, the database and the queue can do at all.
"""
