"""Change events between the control plane and the data plane's snapshots, and the shared
change epoch that makes a change binding on every replica's next request (see base.py)."""

from bastion.bus.base import Bus, ChangeEvent, SharedEpoch
from bastion.bus.memory import MemoryBus
from bastion.bus.registry import create_bus

__all__ = ["Bus", "ChangeEvent", "MemoryBus", "SharedEpoch", "create_bus"]
