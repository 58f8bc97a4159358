"""Change events between the control plane and the data plane's snapshots."""

from bastion.bus.base import Bus, ChangeEvent
from bastion.bus.memory import MemoryBus

__all__ = ["Bus", "ChangeEvent", "MemoryBus"]
