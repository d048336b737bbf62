"""FeaturePool: ring-buffer semantics against a deque reference, dtypes, state round trip, errors."""

from collections import deque

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load, load_file, save, save_file

from semscale_hf.core.pool import FeaturePool


class DequePool:
    """Plain reference: one `deque(maxlen=capacity)` per class, appended to one sample at a time."""

    def __init__(self, capacities):
        self.queues = [deque(maxlen=c) for c in capacities]

    def add(self, features, labels):
        for row, label in zip(features.tolist(), labels.tolist()):
            if label != -100:
                self.queues[label].append(row)


@st.composite
def streams(draw):
    """Capacities and a stream of labelled batches; features are unique row ids (exact in every dtype up to 256)."""
    num_classes = draw(st.integers(1, 5))
    capacities = draw(st.lists(st.integers(0, 5), min_size=num_classes, max_size=num_classes))
    labels = st.one_of(st.just(-100), st.integers(0, num_classes - 1))
    batches = draw(st.lists(st.lists(labels, max_size=12), min_size=1, max_size=8))
    return capacities, batches


def make_batches(batches, dim):
    """Batch k's row i gets features (id, id + 0.5, ...) with a global row id, so rows stay distinguishable."""
    out, next_id = [], 0
    for labels in batches:
        ids = torch.arange(next_id, next_id + len(labels), dtype=torch.float32)
        next_id += len(labels)
        features = ids[:, None] + 0.5 * torch.arange(dim, dtype=torch.float32)
        out.append((features, torch.tensor(labels, dtype=torch.long)))
    return out


def assert_matches(pool, reference, dtype=torch.float32, per_class=True):
    dim = pool.dim
    expected_counts = [len(q) for q in reference.queues]
    assert pool.counts.tolist() == expected_counts
    for c, queue in enumerate(reference.queues if per_class else []):
        expected = torch.tensor(list(queue), dtype=torch.float32).reshape(len(queue), dim).to(dtype)
        got = pool.class_features(c)
        assert got.dtype == dtype
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
    features, labels = pool.features_and_labels()
    expected_features = torch.cat(
        [torch.tensor(list(q), dtype=torch.float32).reshape(len(q), dim) for q in reference.queues]
    ).to(dtype)
    expected_labels = torch.repeat_interleave(torch.arange(len(expected_counts)), torch.tensor(expected_counts))
    torch.testing.assert_close(features, expected_features, rtol=0, atol=0)
    assert torch.equal(labels, expected_labels)
    # in place: the same rows per class, in ring order, and empty slots labelled -100
    storage, storage_labels = pool.storage_and_labels()
    if pool.dim is None:
        assert storage.numel() == storage_labels.numel() == 0
        return
    assert storage.shape[0] == storage_labels.shape[0] == sum(pool.capacities.tolist())
    assert storage.data_ptr() == pool.storage_and_labels()[0].data_ptr()
    for c, queue in enumerate(reference.queues):
        got = storage[storage_labels == c].float()
        expected = torch.tensor(list(queue), dtype=torch.float32).reshape(len(queue), dim)
        assert got.shape[0] == len(queue)
        torch.testing.assert_close(got[got[:, 0].argsort()], expected[expected[:, 0].argsort()], rtol=0, atol=0)
    assert int((storage_labels == -100).sum()) == sum(pool.capacities.tolist()) - sum(expected_counts)


@settings(max_examples=60, deadline=None)
@given(stream=streams(), dim=st.integers(1, 3), lazy=st.booleans())
def test_matches_deque_reference(stream, dim, lazy):
    capacities, batches = stream
    pool = FeaturePool(capacities, dim=None if lazy else dim)
    reference = DequePool(capacities)
    for features, labels in make_batches(batches, dim):
        pool.add(features, labels)
        reference.add(features, labels)
        assert_matches(pool, reference, per_class=False)  # all classes at once, after every batch
    assert_matches(pool, reference)
    assert pool.num_seen.tolist() == [
        sum(label == c for batch in batches for label in batch) for c in range(len(capacities))
    ]


@settings(max_examples=30, deadline=None)
@given(stream=streams(), dtype=st.sampled_from([torch.float16, torch.bfloat16]))
def test_low_precision_storage_matches_reference(stream, dtype):
    capacities, batches = stream
    pool = FeaturePool(capacities, dim=2, dtype=dtype)
    reference = DequePool(capacities)
    for features, labels in make_batches(batches, dim=2):
        pool.add(features, labels)
        reference.add(features, labels)
    assert_matches(pool, reference, dtype=dtype)


@settings(max_examples=40, deadline=None)
@given(stream=streams(), split=st.integers(0, 8), lazy=st.booleans())
def test_state_round_trip_continues_identically(stream, split, lazy):
    capacities, batches = stream
    batches = make_batches(batches, dim=2)
    split = min(split, len(batches))
    pool = FeaturePool(capacities, dim=None if lazy else 2, dtype=torch.bfloat16)
    for features, labels in batches[:split]:
        pool.add(features, labels)
    restored = FeaturePool(capacities, dim=None if lazy else 2, dtype=torch.bfloat16)
    restored.load_state_dict(load(save(pool.state_dict())))
    for features, labels in batches[split:]:
        pool.add(features, labels)
        restored.add(features, labels)
        for c in range(len(capacities)):
            assert torch.equal(restored.class_features(c), pool.class_features(c))
    assert torch.equal(restored.counts, pool.counts)
    for got, expected in zip(restored.features_and_labels(), pool.features_and_labels()):
        assert torch.equal(got, expected)


def test_state_round_trip_through_files(tmp_path):
    generator = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(6):
        labels = torch.randint(-1, 4, (7,), generator=generator)
        labels[labels == -1] = -100
        batches.append((torch.randn(7, 4, generator=generator), labels))
    pool = FeaturePool([3, 0, 5, 2], dtype=torch.float16)
    for features, labels in batches[:3]:
        pool.add(features, labels)
    save_file(pool.state_dict(), tmp_path / "pool.safetensors")
    restored = FeaturePool([3, 0, 5, 2], dtype=torch.float16)
    restored.load_state_dict(load_file(tmp_path / "pool.safetensors"))
    assert restored.dim == 4 and restored.nbytes == pool.nbytes == 10 * 4 * 2
    for features, labels in batches[3:]:
        pool.add(features, labels)
        restored.add(features, labels)
    assert torch.equal(restored.num_seen, pool.num_seen)
    for got, expected in zip(restored.features_and_labels(), pool.features_and_labels()):
        assert torch.equal(got, expected)


def test_oversize_batch_keeps_newest_in_order():
    pool = FeaturePool([3, 2], dim=1)
    pool.add(torch.tensor([[9.0]]), torch.tensor([0]))
    labels = torch.tensor([0, 1, 0, 0, 0, 0, 1, 1, -100])
    pool.add(torch.arange(9.0)[:, None], labels)
    assert pool.class_features(0).flatten().tolist() == [3.0, 4.0, 5.0]
    assert pool.class_features(1).flatten().tolist() == [6.0, 7.0]
    assert pool.num_seen.tolist() == [6, 3]
    pool.add(torch.tensor([[10.0]]), torch.tensor([0]))  # next write replaces the oldest
    assert pool.class_features(0).flatten().tolist() == [4.0, 5.0, 10.0]


def test_capacity_zero_drops_and_layout():
    pool = FeaturePool(torch.tensor([2, 0, 3]), dim=2, dtype=torch.bfloat16)
    assert pool.nbytes == 5 * 2 * 2 and pool.num_classes == 3
    pool.add(torch.ones(4, 2), torch.tensor([1, 1, 2, 0]))
    assert pool.counts.tolist() == [1, 0, 1]
    assert pool.class_features(1).shape == (0, 2)
    features, labels = pool.features_and_labels()
    assert features.dtype == torch.bfloat16 and labels.tolist() == [0, 2]


def test_inputs_are_detached_cast_and_copied():
    pool = FeaturePool([2], dim=3, dtype=torch.float16)
    features = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    pool.add(features, torch.tensor([0, 0]))
    stored = pool.class_features(0)
    assert stored.dtype == torch.float16 and not stored.requires_grad
    torch.testing.assert_close(stored, features.detach().half())
    stored.zero_()  # a returned copy, not a view of the storage
    assert bool((pool.class_features(0) != 0).any())


def test_lazy_dim_and_reset():
    pool = FeaturePool([2, 2])
    assert pool.dim is None and pool.nbytes == 0 and pool.features_and_labels()[0].shape == (0, 0)
    assert pool.class_features(0).shape == (0, 0)
    pool.add(torch.ones(3, 5), torch.tensor([0, 1, 1]))
    assert pool.dim == 5 and pool.nbytes == 4 * 5 * 4
    pool.reset()
    assert pool.counts.tolist() == [0, 0] and pool.dim == 5
    assert pool.features_and_labels()[0].shape == (0, 5)
    pool.add(torch.full((1, 5), 2.0), torch.tensor([1]))
    assert pool.class_features(1).tolist() == [[2.0] * 5]


def test_empty_and_all_ignored_batches():
    pool = FeaturePool([2, 2], dim=2)
    pool.add(torch.empty(0, 2), torch.empty(0, dtype=torch.long))
    pool.add(torch.ones(3, 2), torch.full((3,), -100))
    assert pool.counts.tolist() == [0, 0]


def test_add_errors():
    pool = FeaturePool([2, 2], dim=3)
    with pytest.raises(ValueError, match=r"outside \[0, 2\)"):
        pool.add(torch.zeros(2, 3), torch.tensor([0, 2]))
    with pytest.raises(ValueError, match=r"outside \[0, 2\)"):
        pool.add(torch.zeros(2, 3), torch.tensor([-1, 0]))
    with pytest.raises(TypeError, match="integer"):
        pool.add(torch.zeros(2, 3), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="2 rows but labels have 3"):
        pool.add(torch.zeros(2, 3), torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match="dim 4"):
        pool.add(torch.zeros(2, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="2-D"):
        pool.add(torch.zeros(2, 3, 1), torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="floating-point"):
        pool.add(torch.zeros(2, 3, dtype=torch.long), torch.tensor([0, 1]))
    bad = torch.zeros(4, 3)
    bad[1, 0], bad[3, 2] = float("nan"), float("inf")
    with pytest.raises(ValueError, match="2 of 4 feature rows hold NaN or inf"):
        pool.add(bad, torch.tensor([0, 1, 0, 1]))
    half = FeaturePool([2], dim=1, dtype=torch.float16)
    with pytest.raises(ValueError, match="1 of 2 feature rows .* torch.float16"):
        half.add(torch.tensor([[1.0], [1e6]]), torch.tensor([0, 0]))  # overflows float16
    assert pool.counts.tolist() == [0, 0] and half.counts.tolist() == [0]  # failed adds change nothing
    with pytest.raises(ValueError, match=r"class_id must be an integer in \[0, 2\)"):
        pool.class_features(2)


def test_constructor_errors():
    with pytest.raises(ValueError, match=">= 0"):
        FeaturePool([2, -1])
    with pytest.raises(TypeError, match="integers"):
        FeaturePool([2.5, 1.0])
    with pytest.raises(ValueError, match="non-empty 1-D"):
        FeaturePool([])
    with pytest.raises(ValueError, match="dim must be a positive integer"):
        FeaturePool([2], dim=0)
    with pytest.raises(TypeError, match="floating-point"):
        FeaturePool([2], dtype=torch.int8)


def test_load_state_dict_errors():
    pool = FeaturePool([2, 3], dim=4)
    pool.add(torch.ones(2, 4), torch.tensor([0, 1]))
    state = {key: value.clone() for key, value in pool.state_dict().items()}
    with pytest.raises(ValueError, match="2 classes and 5 slots, this pool has 2 classes and 4 slots"):
        FeaturePool([2, 2], dim=4).load_state_dict(state)
    with pytest.raises(ValueError, match="dim 4, but this pool stores dim 8"):
        FeaturePool([2, 3], dim=8).load_state_dict(state)
    with pytest.raises(ValueError, match="keys"):
        FeaturePool([2, 3]).load_state_dict({k: v for k, v in state.items() if k != "num_seen"})
    with pytest.raises(ValueError, match=r"shape \(5, dim\)"):
        FeaturePool([2, 3]).load_state_dict({**state, "features": state["features"][:4]})
    with pytest.raises(ValueError, match="num_seen"):
        FeaturePool([2, 3]).load_state_dict({**state, "num_seen": torch.tensor([1, 1, 0])})
    restored = FeaturePool([2, 3])  # dim=None adopts the saved dim
    restored.load_state_dict(state)
    assert restored.dim == 4 and restored.counts.tolist() == [1, 1]


def test_state_before_first_add_round_trips():
    pool = FeaturePool([2, 3])
    state = load(save(pool.state_dict()))
    assert state["features"].shape == (5, 0)
    used = FeaturePool([2, 3], dim=2)
    used.add(torch.ones(1, 2), torch.tensor([0]))
    used.load_state_dict(state)  # an empty saved pool empties this one
    assert used.counts.tolist() == [0, 0] and used.dim == 2


def test_scales_measured_in_place_equal_scales_of_the_copy():
    from semscale_hf import class_semantic_scales

    generator = torch.Generator().manual_seed(0)
    pool = FeaturePool([30, 5, 12, 3], dim=8)
    for _ in range(7):  # wraps the small rings several times, leaves class 3 partly empty
        labels = torch.randint(0, 3, (9,), generator=generator)
        pool.add(torch.randn(9, 8, generator=generator), labels)
    pool.add(torch.randn(2, 8, generator=generator), torch.tensor([3, 3]))
    in_place = class_semantic_scales(*pool.storage_and_labels(), 4)
    copied = class_semantic_scales(*pool.features_and_labels(), 4)
    torch.testing.assert_close(in_place, copied, rtol=1e-6, atol=0)  # rows in ring order: float32 rounding differs
    assert torch.isfinite(in_place).all()


def test_unvalidated_add_leaves_bad_rows_out_on_the_device_and_counts_them():
    # the training path: no check may read a value back from the device, so bad rows are masked and counted
    pool = FeaturePool([2, 3])
    features = torch.arange(12, dtype=torch.float32).reshape(6, 2)
    features[1, 0] = float("nan")
    features[4, 1] = float("inf")
    labels = torch.tensor([0, 0, 1, 7, 1, -100])
    pool.add(features, labels, validate=False)
    assert pool.counts.tolist() == [1, 1] and pool.num_seen.tolist() == [1, 1]
    assert pool.class_features(0).tolist() == [[0.0, 1.0]] and pool.class_features(1).tolist() == [[4.0, 5.0]]
    assert pool.pop_rejected() == (2, 1) and pool.pop_rejected() == (0, 0)
    # the same rows through the checked path raise instead
    with pytest.raises(ValueError, match="2 of 6 feature rows hold NaN or inf"):
        pool.add(features, torch.tensor([0, 0, 1, 1, 1, -100]))
    with pytest.raises(ValueError, match="outside"):
        pool.add(features[:1], torch.tensor([7]))


def test_scratch_rows_grow_with_the_batch_and_are_never_read():
    pool = FeaturePool([2, 2])
    pool.add(torch.ones(2, 3), torch.tensor([0, 1]))
    pool.add(torch.full((9, 3), 2.0), torch.tensor([0, 0, 0, 1, 1, 1, -100, -100, -100]))  # more rows than before
    features, labels = pool.storage_and_labels()
    assert features.shape == (4, 3) and labels.tolist() == [0, 0, 1, 1]
    assert pool.nbytes == 4 * 3 * 4
    assert bool((features == 2.0).all())  # the newest two of each class


def test_the_first_batch_allocates_the_storage_once_with_its_scratch_rows(monkeypatch):
    # allocating the pool and then again with scratch rows held two copies of the (empty) pool at once
    pool = FeaturePool(torch.tensor([4, 4]))
    sizes = []
    allocate = pool._allocate
    monkeypatch.setattr(pool, "_allocate", lambda dim, scratch=0: sizes.append(scratch) or allocate(dim, scratch))
    pool.add(torch.randn(6, 3), torch.tensor([0, 1, 0, 1, 0, 1]))
    assert sizes == [6]
    pool.add(torch.randn(5, 3), torch.tensor([0, 1, 0, 1, 0]))  # fewer rows: the scratch rows suffice
    assert sizes == [6] and pool.counts.tolist() == [4, 4]
