"""The choreography half of the engine's public surface: pinned, so a change to it is deliberate."""

from __future__ import annotations

import engine

CHOREOGRAPHY_API = {
    "AppliedFault", "Bus", "BusError", "BusStats", "BusTracer", "Choreographer", "Choreography",
    "ChoreographyResult", "ConsumerCrashed", "DeadLetter", "Delivery", "DeliveryFailed",
    "DeliveryPolicy", "EventContext", "Fault", "FaultInjector", "FaultRule", "Faults",
    "InProcessBus", "Message", "Processed", "Subscription", "Unsettled", "compensation_topic",
    "dead_letter_topic",
}  # fmt: skip


def test_the_choreography_api_is_exported() -> None:
    missing = CHOREOGRAPHY_API - set(engine.__all__)
    assert not missing
    for name in CHOREOGRAPHY_API:
        obj = getattr(engine, name)
        assert getattr(obj, "__module__", "engine").startswith("engine")
