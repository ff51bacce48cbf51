"""The built-in demo upstream: a deterministic model served over real HTTP.

It speaks every dialect the app speaks, paces tokens like a real model, records what it
sent and when each client hung up, and injects failures on request (see ``script``).
``make run`` starts it beside daphne; the tests start it on a loopback port.
"""
