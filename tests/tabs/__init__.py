"""Many tabs, one database, simulated natively (harness.py): in-process Web Locks and
BroadcastChannel fakes with message delays and tab kills. One test module per
concern: leadership, forwarding, the outbox, followers, keys, connection state and
randomized campaigns."""
