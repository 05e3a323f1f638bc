"""The selected candidate pair is reported and logged (runs anywhere: two peers on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from rtc_annotator.config import IceSettings
from rtc_annotator.transport.ice import SelectedPair, selected_pairs
from rtc_annotator.transport.peer import LinkOptions, PeerLink, signaler_pair


async def test_direct_link_reports_a_host_pair(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="rtc_annotator.transport.ice")
    opts = LinkOptions(ice=IceSettings(servers=[], host_addresses=["127.0.0.1"]),
                       heartbeat_s=0.5, dead_after_s=5.0, connect_timeout_s=20.0)
    a, b = signaler_pair()
    client, worker = await asyncio.gather(
        PeerLink.connect(a, offer=True, role="client", options=opts),
        PeerLink.connect(b, offer=False, role="worker", options=opts))
    try:
        pairs = {"client": selected_pairs(client.pc), "worker": selected_pairs(worker.pc)}
        for side, found in pairs.items():
            assert len(found) == 1, side  # one bundled transport, one component
            pair = found[0]
            assert (pair.local_type, pair.remote_type, pair.relayed) == ("host", "host", False)
            assert pair.local_address.startswith("127.0.0.1:")
        # each side's remote is the other side's local
        assert pairs["client"][0].remote_address == pairs["worker"][0].local_address
        assert pairs["worker"][0].remote_address == pairs["client"][0].local_address
        lines = [r.getMessage() for r in caplog.records if "ice pair selected" in r.getMessage()]
        assert len(lines) == 2
        assert all("local_type=host" in line and "relayed=False" in line for line in lines)
    finally:
        await asyncio.gather(client.close(), worker.close())


def test_relayed_means_either_side_is_a_relay() -> None:
    assert SelectedPair("relay", "a:1", "host", "b:2").relayed
    assert SelectedPair("host", "a:1", "relay", "b:2").relayed
    assert not SelectedPair("srflx", "a:1", "prflx", "b:2").relayed
