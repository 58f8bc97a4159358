"""Origins, their discovered items, and the virtual servers composed from them.

`snapshot` holds the immutable views the data plane reads; `holder` keeps the
current one fresh; `discovery` asks origins what they offer.
"""

from bastion.catalog.snapshot import OriginSpec, Route, ServerView, Snapshot

__all__ = ["OriginSpec", "Route", "ServerView", "Snapshot"]
