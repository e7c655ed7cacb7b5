"""The local runtime: a cluster's core processes, their configuration and supervision.

Capabilities plug in through `airscale.runtime.capability`; nothing here imports them.
"""
