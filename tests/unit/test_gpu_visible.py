"""GPU detection reads CUDA_VISIBLE_DEVICES as CUDA does: indices, GPU UUIDs and MIG ids."""

from __future__ import annotations

import pytest

from rtc_annotator.pipelines.gpu import cuda_visible_entry, parse_nvidia_smi, visible_devices

QUERY = (
    "0, GPU-8f6e1c2a-0000-1111-2222-333344445555, NVIDIA A100-SXM4-80GB, 81920\n"
    "1, GPU-1d2e3f4a-aaaa-bbbb-cccc-ddddeeeeffff, NVIDIA H200, 143771\n"
)
LISTING = (
    "GPU 0: NVIDIA A100-SXM4-80GB (UUID: GPU-8f6e1c2a-0000-1111-2222-333344445555)\n"
    "  MIG 1g.10gb     Device  0: (UUID: MIG-4b9c7d1e-1234-5678-9abc-def012345678)\n"
    "  MIG 3g.40gb     Device  1: (UUID: MIG-GPU-8f6e1c2a-0000-1111-2222-333344445555/2/0)\n"
    "GPU 1: NVIDIA H200 (UUID: GPU-1d2e3f4a-aaaa-bbbb-cccc-ddddeeeeffff)\n"
)


def gpus(visible: str | None) -> list[tuple[int, str, int]]:
    return [(g.index, g.name, g.memory_mb)
            for g in parse_nvidia_smi(QUERY, LISTING, visible, use_env=False)]


def test_unset_means_every_gpu() -> None:
    assert gpus(None) == [(0, "NVIDIA A100-SXM4-80GB", 81920), (1, "NVIDIA H200", 143771)]


def test_uuid_entries_select_gpus_in_their_order() -> None:
    assert gpus("GPU-1d2e3f4a-aaaa-bbbb-cccc-ddddeeeeffff,GPU-8f6e1c2a-0000-1111-2222-333344445555"
                ) == [(0, "NVIDIA H200", 143771), (1, "NVIDIA A100-SXM4-80GB", 81920)]


def test_unique_uuid_prefix_is_enough() -> None:
    assert gpus("GPU-1d2e") == [(0, "NVIDIA H200", 143771)]


def test_mig_instances_both_formats() -> None:
    assert gpus("MIG-4b9c7d1e-1234-5678-9abc-def012345678") == [
        (0, "NVIDIA A100-SXM4-80GB MIG 1g.10gb", 10240)]
    assert gpus("MIG-GPU-8f6e1c2a-0000-1111-2222-333344445555/2/0") == [
        (0, "NVIDIA A100-SXM4-80GB MIG 3g.40gb", 40960)]


def test_numeric_with_spaces_and_physical_index() -> None:
    assert gpus(" 1 ") == [(0, "NVIDIA H200", 143771)]


@pytest.mark.parametrize("value", ["", "-1", "NoDevFiles", "GPU-ffff", "7"])
def test_hidden_or_unknown_gives_no_gpu(value: str) -> None:
    assert gpus(value) == []


def test_enumeration_stops_at_first_bad_entry_like_cuda() -> None:
    assert gpus("1,7,0") == [(0, "NVIDIA H200", 143771)]
    assert visible_devices("0,bogus,1") == ["0"]


def test_query_without_uuid_column_still_parses() -> None:
    old = "0, NVIDIA H200, 143771\n"
    assert [(g.index, g.name) for g in parse_nvidia_smi(old, visible=None, use_env=False)] == [
        (0, "NVIDIA H200")]


def test_child_gets_the_parents_entry() -> None:
    value = "GPU-1d2e3f4a-aaaa-bbbb-cccc-ddddeeeeffff,MIG-4b9c7d1e-1234-5678-9abc-def012345678"
    assert cuda_visible_entry(0, value) == "GPU-1d2e3f4a-aaaa-bbbb-cccc-ddddeeeeffff"
    assert cuda_visible_entry(1, value) == "MIG-4b9c7d1e-1234-5678-9abc-def012345678"
    assert cuda_visible_entry(1, "2,3") == "3"     # not physical GPU 1
    assert cuda_visible_entry(1, None) == "1"
