"""The servable lifecycle, TF Serving's ``core/``: sources, loaders, harnesses, policies, manager.

Imports only the standard library and ``nbserve.errors`` / ``nbserve.options`` (no numpy, TF, gRPC,
aiohttp or IPython), so the whole lifecycle runs and is tested without TensorFlow.
"""

from nbserve.core.events import EventBus, ManagerState, ServableState, StateMonitor
from nbserve.core.handle import HandleGate, ServableHandle
from nbserve.core.harness import HarnessState, LoaderHarness
from nbserve.core.ids import ServableId, ServableRequest
from nbserve.core.loader import Loader
from nbserve.core.manager import AspiredVersionsManager
from nbserve.core.policy import (
                                 POLICIES,
                                 Action,
                                 AspiredVersionInfo,
                                 availability_preserving,
                                 resource_preserving,
)
from nbserve.core.source import AspiredVersionsCallback, ServableData, Source

__all__ = [
                                 "POLICIES",
                                 "Action",
                                 "AspiredVersionInfo",
                                 "AspiredVersionsCallback",
                                 "AspiredVersionsManager",
                                 "EventBus",
                                 "HandleGate",
                                 "HarnessState",
                                 "Loader",
                                 "LoaderHarness",
                                 "ManagerState",
                                 "ServableData",
                                 "ServableHandle",
                                 "ServableId",
                                 "ServableRequest",
                                 "ServableState",
                                 "Source",
                                 "StateMonitor",
                                 "availability_preserving",
                                 "resource_preserving",
]
