"""Loaded balancer state is checked before it is used: every failure names the file and the field."""

import logging

import pytest
import torch
from safetensors.torch import load_file, save_file

from semscale_hf.core.balancer import POOL_FILE, STATE_FILE, SemScaleBalancer


COUNTS = [6, 4, 2]


def _trained(tmp_path):
    balancer = SemScaleBalancer(COUNTS)
    generator = torch.Generator().manual_seed(0)
    balancer.record(torch.randn(12, 5, generator=generator), torch.tensor([0] * 6 + [1] * 4 + [2] * 2))
    balancer.refresh(step=3)
    balancer.save(tmp_path, include_pool=True)
    return balancer


def _rewrite(path, **changes):
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    tensors = load_file(str(path))
    for key, value in changes.items():
        if isinstance(value, str):
            metadata[key] = value
        else:
            tensors[key] = value
    save_file(tensors, str(path), metadata=metadata)


def test_a_saved_state_loads_back_exactly(tmp_path):
    saved = _trained(tmp_path)
    loaded = SemScaleBalancer(COUNTS)
    assert loaded.load(tmp_path, feature_dim=5) and loaded.pool_restored
    assert torch.equal(loaded.class_weights, saved.class_weights)
    assert loaded.stage == "balanced" and loaded.num_refreshes == 1 and loaded.last_refresh_step == 3
    assert loaded.first_measurement_features == 12 and loaded.min_pool_features == 0
    assert torch.equal(loaded.pool.features_and_labels()[0], saved.pool.features_and_labels()[0])


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"class_weights": torch.tensor([1.0, float("nan"), 1.0], dtype=torch.float64)}, "class_weights"),
        ({"class_weights": torch.tensor([2.0, -1.0, 2.0], dtype=torch.float64)}, "finite and positive"),
        ({"class_weights": torch.tensor([1.5, 0.0, 1.5], dtype=torch.float64)}, "finite and positive"),
        ({"class_weights": torch.ones(4, dtype=torch.float64)}, r"class_weights has shape \(4,\)"),
        ({"semantic_scales": torch.ones(2, dtype=torch.float64)}, r"semantic_scales has shape \(2,\)"),
        ({"semantic_scales": torch.tensor([1.0, float("inf"), 1.0], dtype=torch.float64)}, "semantic_scales"),
        ({"stage": "finetune"}, "stage must be one of"),
        ({"num_refreshes": "two"}, "num_refreshes must be a non-negative integer"),
        ({"stage": "balanced", "num_refreshes": "0"}, "inconsistent"),
    ],
)
def test_bad_state_values_are_rejected_naming_file_and_field(tmp_path, changes, match):
    _trained(tmp_path)
    _rewrite(tmp_path / STATE_FILE, **changes)
    fresh = SemScaleBalancer(COUNTS)
    with pytest.raises(ValueError, match=match) as error:
        fresh.load(tmp_path)
    assert STATE_FILE in str(error.value)
    assert fresh.stage == "warmup" and torch.equal(fresh.class_weights, torch.ones(3, dtype=torch.float64))


def test_bad_pool_files_are_rejected(tmp_path):
    _trained(tmp_path)
    with pytest.raises(ValueError, match=rf"{POOL_FILE}: the pool holds features of dimension 5.*takes 7"):
        SemScaleBalancer(COUNTS).load(tmp_path, feature_dim=7)
    pool = load_file(str(tmp_path / POOL_FILE))
    pool["features"][0, 0] = float("nan")
    save_file(pool, str(tmp_path / POOL_FILE))
    with pytest.raises(ValueError, match="NaN or inf"):
        SemScaleBalancer(COUNTS).load(tmp_path)
    _trained(tmp_path)
    _rewrite(tmp_path / STATE_FILE, pool_counts=torch.tensor([1, 1, 1]))
    with pytest.raises(ValueError, match="disagree"):
        SemScaleBalancer(COUNTS).load(tmp_path)
    (tmp_path / POOL_FILE).write_bytes(b"")  # a kill while writing
    with pytest.raises(ValueError, match=rf"{POOL_FILE} cannot be read"):
        SemScaleBalancer(COUNTS).load(tmp_path)


def test_changed_class_counts_warn(tmp_path, caplog):
    _trained(tmp_path)
    with caplog.at_level(logging.WARNING, logger="semscale_hf.core.balancer"):
        SemScaleBalancer([6, 4, 3]).load(tmp_path)
    assert "differ from this training set's" in caplog.text


def test_a_missing_pool_keeps_the_weights_and_defers_the_next_refresh(tmp_path):
    saved = _trained(tmp_path)
    (tmp_path / POOL_FILE).unlink()
    loaded = SemScaleBalancer(COUNTS)
    assert loaded.load(tmp_path) and not loaded.pool_restored
    assert torch.equal(loaded.class_weights, saved.class_weights) and loaded.stage == "balanced"
    assert loaded.min_pool_features == 12 and not loaded.ready_to_refresh()
    loaded.record(torch.randn(8, 5), torch.tensor([0, 0, 0, 0, 1, 1, 2, 2]))
    assert not loaded.ready_to_refresh()  # 8 of the 12 features the first measurement had
    loaded.record(torch.randn(4, 5), torch.tensor([0, 0, 1, 1]))
    assert loaded.ready_to_refresh()


def _unchanged(balancer, features):
    """Nothing of `balancer` was changed by a failed load: its stage, weights and pool."""
    assert balancer.stage == "warmup" and balancer.num_refreshes == 0
    assert torch.equal(balancer.class_weights, torch.ones(3, dtype=torch.float64))
    assert torch.equal(balancer.pool.features_and_labels()[0], features)


def test_a_pool_that_does_not_fit_changes_nothing(tmp_path):
    _trained(tmp_path)
    fresh = SemScaleBalancer(COUNTS)
    fresh.record(torch.ones(2, 5), torch.tensor([0, 1]))
    before = fresh.pool.features_and_labels()[0].clone()
    pool = load_file(str(tmp_path / POOL_FILE))
    pool["num_seen"] = torch.tensor([1, 1])  # damaged: the pool's own checks refuse it
    save_file(pool, str(tmp_path / POOL_FILE))
    with pytest.raises(ValueError, match=rf"{POOL_FILE}: state\['num_seen'\] must be non-negative integers"):
        fresh.load(tmp_path)
    _unchanged(fresh, before)


def test_a_pool_saved_under_another_cap_is_not_restored_but_the_weights_are(tmp_path, caplog):
    # semscale_pool_max_per_class changed between runs: the resume failed with advice to "build the pool with the
    # capacities it was saved with"; now the pool starts empty, as when the class counts changed
    saved = _trained(tmp_path)
    capped = SemScaleBalancer(COUNTS, pool_max_per_class=3)
    with caplog.at_level(logging.WARNING, logger="semscale_hf.core.balancer"):
        assert capped.load(tmp_path, feature_dim=5)
    assert capped.pool_not_restored_because == "pool capacities changed" and int(capped.pool.counts.sum()) == 0
    assert torch.equal(capped.class_weights, saved.class_weights) and capped.stage == "balanced"
    assert capped.min_pool_features == 8  # 3 + 3 + 2 slots: the pool can never hold the first measurement's 12
    assert "pool_max_per_class changed?" in caplog.text


@pytest.mark.parametrize(
    "option, match",
    [
        ({"power": float("nan")}, "power must be a finite number"),
        ({"momentum": 1.5}, r"momentum must be in \[0, 1\)"),
        ({"weight_min": 3.0}, "w_min <= 1 <= w_max"),
        ({"min_count": 0}, "min_count"),
        ({"alpha": -1.0}, "alpha must be"),
        ({"pool_max_per_class": 0}, "pool_max_per_class"),
    ],
)
def test_bad_settings_fail_at_construction(option, match):
    # they failed only at the first refresh, after the whole warm-up
    with pytest.raises(ValueError, match=match):
        SemScaleBalancer(COUNTS, **option)


def test_momentum_on_the_same_pool_leaves_the_weights_as_they_are():
    # blending renormalised over every class, the unmeasured one too: the second refresh shrank every weight and
    # broke weight_min
    balancer = SemScaleBalancer([10, 10, 10, 1], momentum=0.5, weight_min=0.5, weight_max=2.0)
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(31, 5, generator=generator) * torch.tensor([1.0, 2.0, 3.0, 1.0, 1.0])
    balancer.record(features, torch.tensor([0] * 10 + [1] * 10 + [2] * 10 + [3]))
    balancer.refresh(step=1)
    first = balancer.class_weights.clone()
    balancer.refresh(step=2)
    torch.testing.assert_close(balancer.class_weights, first, rtol=1e-12, atol=0)
    assert float(balancer.class_weights.min()) >= 0.5 and float(balancer.class_weights[:3].mean()) == pytest.approx(1)


def _drop(path, key):
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    tensors = load_file(str(path))
    del tensors[key]
    save_file(tensors, str(path), metadata=metadata)


def test_pool_counts_that_cannot_be_compared_are_an_error(tmp_path):
    _trained(tmp_path)
    _rewrite(tmp_path / STATE_FILE, pool_counts=torch.tensor([6, 4]))
    fresh = SemScaleBalancer(COUNTS)
    before = fresh.pool.features_and_labels()[0]
    with pytest.raises(ValueError, match=rf"{STATE_FILE}: pool_counts must be .* shape \(3,\), got shape \(2,\)"):
        fresh.load(tmp_path)
    _trained(tmp_path)
    _drop(tmp_path / STATE_FILE, "pool_counts")
    with pytest.raises(ValueError, match=rf"'pool_counts' is missing, so .*{POOL_FILE} cannot be checked"):
        fresh.load(tmp_path)
    _unchanged(fresh, before)
    (tmp_path / POOL_FILE).unlink()  # without the pool there is nothing to compare: the pool starts empty
    assert fresh.load(tmp_path) and fresh.pool_not_restored_because == "missing"


def test_why_a_pool_was_not_restored(tmp_path, caplog):
    _trained(tmp_path)
    changed = SemScaleBalancer([6, 4, 3])
    with caplog.at_level(logging.WARNING, logger="semscale_hf.core.balancer"):
        assert changed.load(tmp_path)
    assert changed.pool_not_restored_because == "class counts changed" and int(changed.pool.counts.sum()) == 0
    assert "the checkpoint's class weights stay in force until the next refresh" in caplog.text
    assert changed.min_pool_features == 12
    # a pool that was empty when it was saved loses nothing (no pool file is written for it)
    empty = SemScaleBalancer(COUNTS)
    empty.save(tmp_path / "empty", include_pool=True)
    assert not (tmp_path / "empty" / POOL_FILE).exists()
    loaded = SemScaleBalancer(COUNTS)
    assert loaded.load(tmp_path / "empty") and loaded.pool_not_restored_because is None and loaded.pool_restored


@pytest.mark.parametrize("restored_with", ["fewer samples", "a lower pool cap"])
def test_the_deferred_refresh_waits_for_no_more_than_the_pool_can_hold(tmp_path, restored_with):
    # the first measurement saw all 12 features; a pool of capacity 11 (or 9) could never hold that many again
    _trained(tmp_path)
    if restored_with == "fewer samples":
        loaded, capacity = SemScaleBalancer([6, 4, 1]), 11
    else:
        (tmp_path / POOL_FILE).unlink()
        loaded, capacity = SemScaleBalancer(COUNTS, pool_max_per_class=3), 8
    assert loaded.load(tmp_path) and not loaded.pool_restored
    assert loaded.min_pool_features == capacity
    loaded.record(torch.randn(16, 5), torch.tensor([0] * 8 + [1] * 6 + [2] * 2))
    assert int(loaded.pool.counts.sum()) == capacity and loaded.ready_to_refresh()


def test_a_save_without_the_pool_removes_an_older_pool_file(tmp_path):
    # the stale pool of an earlier save into the same folder failed the next load's pool_counts check
    _trained(tmp_path)
    fresh = SemScaleBalancer(COUNTS)
    fresh.save(tmp_path, include_pool=False)
    assert not (tmp_path / POOL_FILE).exists()
    loaded = SemScaleBalancer(COUNTS)
    assert loaded.load(tmp_path) and loaded.pool_not_restored_because is None
