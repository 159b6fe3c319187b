"""`srpo tiny-world gates` on the shipped weights, with fewer judged and paired images
(the generator's 2 x 240 samples are kept: its shape fidelity sits near its threshold)."""

import pytest

from srpo.tiny_world.gates import THRESHOLDS, GateSizes, evaluate, failures
from srpo.tiny_world.weights import read_manifest

REDUCED = GateSizes(images=200, pairs=50)


@pytest.fixture(scope="module")
def report():
    return evaluate(sizes=REDUCED)


def test_shipped_weights_pass_every_gate(report):
    assert report["failures"] == []
    assert report["passed"]


def test_manifest_records_the_full_gates_and_fits_the_size_budget():
    manifest = read_manifest()
    assert manifest["gates"]["passed"]
    assert sum(entry["bytes"] for entry in manifest["files"].values()) <= 25 * 2**20
    assert set(manifest["gates"]) >= set(THRESHOLDS) | {"seconds"}


def test_failures_name_the_gate_and_the_threshold(report):
    broken = {**report, "reward_zero_shot": {**report["reward_zero_shot"], "shape": 0.5}}
    broken["generator_style_max_share_unprompted"] = 0.9
    missed = failures(broken)
    assert "reward_zero_shot[shape]=0.500 (need >= 0.9)" in missed
    assert "generator_style_max_share_unprompted=0.900 (need <= 0.7)" in missed
