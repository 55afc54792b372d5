"""The kernel's split storage (slot table + open-session rows) against the reference.

KernelReplay reserves SLOT_RESERVE slots up front, so small inputs never grow the slot
table; here the reserve is two slots as well, so that slot growth (with its own row width),
session-row growth, _collect and rehashing all run on every generated input.
"""

from __future__ import annotations

import functools
from unittest import mock

from hypothesis import given

from obserae_forensics.sessionize import SessionPolicy
from obserae_forensics.sessionize import kernel as K
from obserae_forensics.sessionize.kernel import KernelReplay

from .scenario import rec, run
from .test_properties import SETTINGS, policies, records


def _tiny_run(flows: list, policy: SessionPolicy) -> tuple:
    tiny = functools.partial(KernelReplay, capacity=2)
    with mock.patch("obserae_forensics.sessionize.sessionizer.KernelReplay", tiny), \
            mock.patch("obserae_forensics.sessionize.kernel.SLOT_RESERVE", 2):
        return run(flows, policy, engine="numba")


@SETTINGS
@given(records(), policies)
def test_kernel_with_tiny_slot_reserve_equals_reference(flows: list,
                                                        policy: SessionPolicy) -> None:
    kernel_sessions, kernel_flows, kernel = _tiny_run(flows, policy)
    reference_sessions, reference_flows, reference = run(flows, policy, engine="reference")
    assert kernel_sessions.equals(reference_sessions)
    assert kernel_flows.equals(reference_flows)
    assert kernel.pressure() == reference.pressure()


def test_remembered_keys_keep_no_session_row() -> None:
    """A flood of one-record conversations under a cap of 4: session rows stay at the cap
    plus one (rounded up to a power of two) while the slots grow with the remembered keys,
    and the result is the reference's."""
    policy = SessionPolicy(max_open_ksessions=0.004)
    flows = [rec(i / 10, src=f"10.0.{i // 250}.{i % 250 + 1}", dst="192.0.2.1", dport=53,
                 proto=17) for i in range(300)]
    made: list[KernelReplay] = []
    sizes: list[tuple[int, int, int]] = []

    class Recording(KernelReplay):
        def _release(self) -> None:
            sizes.append((len(self.M), int(self.C[K.S_SLOTS]), self.S.shape[1]))
            super()._release()

    def tiny(*args: object, **kwargs: object) -> KernelReplay:
        made.append(Recording(*args, **kwargs, capacity=2))  # type: ignore[arg-type]
        return made[-1]

    with mock.patch("obserae_forensics.sessionize.sessionizer.KernelReplay", tiny), \
            mock.patch("obserae_forensics.sessionize.kernel.SLOT_RESERVE", 2):
        kernel_sessions, kernel_flows, kernel = run(flows, policy, engine="numba")
    reference_sessions, reference_flows, reference = run(flows, policy, engine="reference")
    assert kernel_sessions.equals(reference_sessions)
    assert kernel_flows.equals(reference_flows)
    assert kernel.pressure() == reference.pressure()
    [replay] = made
    assert replay.pressure()["evictions"] == 296
    [(rows, slots, width)] = sizes
    assert rows == 8
    assert slots >= 300
    assert width * 8 == 128
    assert len(replay.S) == len(replay.M) == 0  # released at finish
