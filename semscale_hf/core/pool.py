"""The storage pool of dynamic semantic-scale-balanced learning: per-class ring buffers of recent features."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from ._validation import IGNORE_INDEX, NonFiniteFeaturesError, check_int, check_labels


__all__ = ["FeaturePool"]

_STATE_KEYS = ("capacities", "features", "num_seen")


class FeaturePool:
    r"""Per-class ring buffers holding the most recent features of each class (method.md, section 6).

    Every training step writes the batch's features (the classification head's input) into the pool; scales are
    measured on its content, which stands in for the current features because features drift slowly (Cross-Batch
    Memory, Wang et al. 2020). With the capacity of a class equal to its number of training samples, the pool holds
    the latest feature of every sample after one epoch.

    Memory layout: one preallocated tensor of shape `(sum(capacities), dim)`; class `c` owns the rows
    `offsets[c] : offsets[c] + capacities[c]`. A single counter per class, `num_seen` (features received so far),
    gives both the next write slot (`num_seen % capacity`) and the fill count (`min(num_seen, capacity)`).

    Args:
        capacities (`Sequence[int]` or `torch.Tensor` of shape `(num_classes,)`):
            Ring size per class, e.g. the class's training count capped by a maximum per class. A capacity of 0 is
            allowed (a class absent from the training set): its features are dropped.
        dim (`int`, *optional*):
            Feature dimension. Defaults to the width of the first batch given to [`~FeaturePool.add`] (the
            storage is allocated then).
        dtype (`torch.dtype`, *optional*, defaults to `torch.float32`):
            Storage dtype; `torch.float16` or `torch.bfloat16` halve the memory.
        device (`torch.device` or `str`, *optional*, defaults to `"cpu"`):
            Where the storage lives; incoming features are moved there.

    Example:

    >>> import torch
    >>> pool = FeaturePool([2, 3])
    >>> pool.add(torch.tensor([[1.0], [2.0], [3.0], [4.0]]), torch.tensor([0, 0, 0, -100]))
    >>> pool.class_features(0).flatten().tolist()  # capacity 2: the two newest, oldest first
    [2.0, 3.0]
    >>> pool.counts.tolist()
    [2, 0]
    """

    def __init__(
        self,
        capacities: Sequence[int] | torch.Tensor,
        dim: int | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating-point torch.dtype (e.g. torch.float16), got {dtype!r}")
        check_int("dim", dim, minimum=1, optional=True)  # None: set by the first add
        self.dtype = dtype
        self.device = torch.device(device)
        self._capacities = _check_capacities(capacities).to(self.device)
        self._offsets = torch.cumsum(self._capacities, 0) - self._capacities
        self._total = int(self._capacities.sum())
        # with an extra class of capacity 0 that takes the samples `add` does not keep
        self._capacities_ext = torch.cat([self._capacities, self._capacities.new_zeros(1)])
        self._num_seen_ext = torch.zeros_like(self._capacities_ext)
        self._num_seen = self._num_seen_ext[: self.num_classes]  # a view: updated in place
        self._offsets_ext = torch.cat([self._offsets, self._offsets.new_full((1,), self._total)])
        self._rejected = torch.zeros(2, dtype=torch.long, device=self.device)
        self._features: torch.Tensor | None = None
        self._storage: torch.Tensor | None = None
        if dim is not None:
            self._allocate(dim)

    def _allocate(self, dim: int, scratch: int = 0) -> None:
        # the pool's rows, then `scratch` rows that `add` writes discarded samples to (never read)
        self._storage = torch.zeros(self._total + scratch, dim, dtype=self.dtype, device=self.device)
        self._features = self._storage[: self._total]

    def _ensure_scratch(self, rows: int) -> None:
        # a larger batch (a longer token batch) needs more scratch rows: the pool is copied into a new storage, so
        # for that moment both exist
        if self._storage.shape[0] - self._total < rows:
            old = self._features
            self._allocate(old.shape[1], scratch=rows)
            self._features.copy_(old)

    @property
    def num_classes(self) -> int:
        return self._capacities.shape[0]

    @property
    def dim(self) -> int | None:
        """Feature dimension, or `None` before the first [`~FeaturePool.add`] when it was not given."""
        return None if self._features is None else self._features.shape[1]

    @property
    def capacities(self) -> torch.Tensor:
        """Ring size per class, `(num_classes,)` int64."""
        return self._capacities.clone()

    @property
    def counts(self) -> torch.Tensor:
        """Number of stored features per class, `(num_classes,)` int64."""
        return torch.minimum(self._num_seen, self._capacities)

    @property
    def num_seen(self) -> torch.Tensor:
        """Number of features received per class since the last reset (stored or since overwritten)."""
        return self._num_seen.clone()

    @property
    def nbytes(self) -> int:
        """Bytes held by the feature storage (0 before allocation)."""
        return 0 if self._features is None else self._features.nbytes

    def add(self, features: torch.Tensor, labels: torch.Tensor, *, validate: bool = True) -> None:
        """Writes a batch into the class ring buffers, in batch order.

        Vectorised: a stable sort by label gives every sample its rank among the batch's samples of its class, hence
        its ring slot. When a batch holds more samples of a class than its capacity, the newest win (as if written
        one by one); only they reach the pool, so no slot is written twice. The write itself never waits for the
        device: rows that are not kept are sent to scratch rows past the pool's end, which are never read.

        Args:
            features (`torch.Tensor` of shape `(batch, dim)`):
                Features, any float dtype and device; detached and converted to the storage dtype and device.
            labels (`torch.Tensor` of shape `(batch,)`):
                Integer class ids in `[0, num_classes)`; rows labelled -100 are skipped.
            validate (`bool`, *optional*, defaults to `True`):
                Raise on out-of-range labels and NaN/inf features (checks that make the host wait for the device).
                `False`, for training loops: such rows are left out on the device and counted, and
                [`~FeaturePool.pop_rejected`] reports them later, at a moment that may synchronise.

        Raises:
            `ValueError`: on labels out of range, a shape or dim mismatch, or NaN/inf features (the message gives the
                number of bad rows; with a 16-bit storage dtype, values beyond its range turn into inf); the last two
                only with `validate=True`.
            `TypeError`: on non-float features or non-integer labels.
        """
        if not isinstance(features, torch.Tensor) or not features.is_floating_point():
            got = features.dtype if isinstance(features, torch.Tensor) else type(features).__name__
            raise TypeError(f"features must be a floating-point torch.Tensor of shape (batch, dim), got {got}")
        if features.ndim != 2:
            raise ValueError(f"features must be 2-D (batch, dim), got shape {tuple(features.shape)}")
        if self._features is not None and features.shape[1] != self._features.shape[1]:
            raise ValueError(
                f"features have dim {features.shape[1]}, but the pool stores dim {self._features.shape[1]}; "
                "build the pool with the feature dimension of this model's head"
            )
        if features.shape[1] == 0:
            raise ValueError("features have dim 0; the pool needs at least one feature column")
        if isinstance(labels, torch.Tensor):
            labels = labels.to(self.device)
        labels = check_labels(labels, features.shape[0], self.num_classes, check_range=validate)
        features = features.detach().to(dtype=self.dtype).to(device=self.device)
        finite = torch.isfinite(features).all(dim=1)
        if validate and not bool(finite.all()):
            num_bad = int((~finite).sum())
            raise NonFiniteFeaturesError(
                f"{num_bad} of {features.shape[0]} feature rows hold NaN or inf after conversion "
                f"to the storage dtype {self.dtype}; check the model for divergence (or, for a 16-bit dtype, "
                "features beyond its range)",
                num_bad=num_bad,
                num_rows=features.shape[0],
            )
        if self._features is None:  # with this batch's scratch rows at once: no second, larger allocation
            self._allocate(features.shape[1], scratch=features.shape[0])
        self._ensure_scratch(features.shape[0])

        num_classes = self.num_classes
        in_range = (labels >= 0) & (labels < num_classes)
        if not validate:  # counted on the device; reported by pop_rejected
            self._rejected[0] += (in_range & ~finite).sum()
            self._rejected[1] += ((labels != IGNORE_INDEX) & ~in_range).sum()
        # every row that is not kept takes the extra class `num_classes`, of capacity 0, which sorts last
        key = torch.where(in_range & finite, labels, num_classes)
        order = torch.argsort(key, stable=True)
        sorted_key = key[order]
        batch_counts = torch.zeros(num_classes + 1, dtype=torch.long, device=self.device)
        batch_counts.scatter_add_(0, key, torch.ones_like(key))  # as bincount, without reading its size back
        # rank of each sample among this batch's samples of its class, in batch order (the sort is stable)
        first = torch.cumsum(batch_counts, 0) - batch_counts
        rank = torch.arange(sorted_key.shape[0], device=self.device) - first[sorted_key]
        capacity = self._capacities_ext[sorted_key]
        # Only the newest `capacity` samples of each class survive the batch (capacity 0 keeps none), so every
        # written slot is distinct: index_copy_ with repeated indices would not say which write wins. The others go
        # to distinct scratch rows.
        newest = rank >= batch_counts[sorted_key] - capacity
        slots = (self._num_seen_ext[sorted_key] + rank) % capacity.clamp(min=1)
        scratch = self._total + torch.arange(sorted_key.shape[0], device=self.device)
        rows = torch.where(newest, self._offsets_ext[sorted_key] + slots, scratch)
        self._storage.index_copy_(0, rows, features[order])
        self._num_seen += batch_counts[:num_classes]

    def pop_rejected(self) -> tuple[int, int]:
        """Rows left out by `add(..., validate=False)` since the last call: `(non-finite features, bad labels)`.

        Reads two counters from the pool's device (one synchronisation) and resets them.
        """
        non_finite, bad_labels = self._rejected.tolist()
        self._rejected.zero_()
        return non_finite, bad_labels

    def _rows(self, classes: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """Storage rows of the stored features of `classes`, grouped by class, oldest to newest within a class."""
        labels = torch.repeat_interleave(classes, counts)
        first = torch.cumsum(counts, 0) - counts
        age = torch.arange(labels.shape[0], device=self.device) - torch.repeat_interleave(first, counts)
        capacity = self._capacities[labels]
        oldest = (self._num_seen[labels] - counts.repeat_interleave(counts)) % capacity
        return self._offsets[labels] + (oldest + age) % capacity

    def class_features(self, class_id: int) -> torch.Tensor:
        """Stored features of one class, `(m_c, dim)` in the storage dtype, oldest first (a copy)."""
        if isinstance(class_id, bool) or not isinstance(class_id, int) or not 0 <= class_id < self.num_classes:
            raise ValueError(f"class_id must be an integer in [0, {self.num_classes}), got {class_id!r}")
        if self._features is None:
            return torch.empty(0, 0, dtype=self.dtype, device=self.device)
        classes = torch.tensor([class_id], device=self.device)
        return self._features[self._rows(classes, self.counts[classes])]

    def features_and_labels(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All stored features and their labels, grouped by class, oldest first within a class (a copy).

        Returns:
            `tuple[torch.Tensor, torch.Tensor]`: features `(num_stored, dim)` in the storage dtype and labels
            `(num_stored,)` int64, ready for [`~semscale_hf.core.scales.class_semantic_scales`].
        """
        if self._features is None:
            empty_labels = torch.empty(0, dtype=torch.long, device=self.device)
            return torch.empty(0, 0, dtype=self.dtype, device=self.device), empty_labels
        classes = torch.arange(self.num_classes, device=self.device)
        counts = self.counts
        return self._features[self._rows(classes, counts)], torch.repeat_interleave(classes, counts)

    def storage_and_labels(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The feature storage itself (not a copy) and one label per storage row: its class, or -100 if empty.

        Scales do not depend on the order of a class's features, so
        [`~semscale_hf.core.scales.class_semantic_scales`] measures the pool in place from these, without the copy of
        [`~FeaturePool.features_and_labels`] (a whole pool: 0.95 GB for ImageNet-LT features of dimension 2048).
        Do not modify the storage.
        """
        if self._features is None:
            empty_labels = torch.empty(0, dtype=torch.long, device=self.device)
            return torch.empty(0, 0, dtype=self.dtype, device=self.device), empty_labels
        classes = torch.arange(self.num_classes, device=self.device)
        labels = torch.repeat_interleave(classes, self._capacities)
        slots = torch.arange(labels.shape[0], device=self.device) - self._offsets[labels]
        # the ring of a class fills its slots from 0 (writes go to slot num_seen % capacity)
        return self._features, torch.where(slots < self.counts[labels], labels, IGNORE_INDEX)

    def reset(self) -> None:
        """Empties every class (the storage stays allocated; stale rows are never read again)."""
        self._num_seen.zero_()

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The pool's state as tensors only, so `safetensors.torch.save_file` can write it.

        The tensors share memory with the pool (as `nn.Module.state_dict` does): save or clone them before the next
        [`~FeaturePool.add`]. Before allocation, `features` has shape `(sum(capacities), 0)`.
        """
        features = self._features
        if features is None:
            features = torch.empty(int(self._capacities.sum()), 0, dtype=self.dtype, device=self.device)
        return {"capacities": self._capacities, "features": features, "num_seen": self._num_seen}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Restores a state from [`~FeaturePool.state_dict`]; later adds behave as in the saved pool.

        The pool must have the same capacities (and, if set, the same dim); features are converted to this pool's
        dtype and device.

        Raises:
            `ValueError`: on missing or unexpected keys, or shapes or capacities that do not match this pool.
        """
        if not isinstance(state, Mapping) or set(state) != set(_STATE_KEYS):
            keys = sorted(state) if isinstance(state, Mapping) else type(state).__name__
            raise ValueError(f"state must be a mapping with keys {list(_STATE_KEYS)}, got {keys}")
        capacities, features, num_seen = (state[key] for key in _STATE_KEYS)
        if not all(isinstance(t, torch.Tensor) for t in (capacities, features, num_seen)):
            raise ValueError("state values must be tensors, as returned by FeaturePool.state_dict()")
        if capacities.shape != self._capacities.shape or not torch.equal(capacities.cpu(), self._capacities.cpu()):
            raise ValueError(
                f"state was saved by a pool with {capacities.numel()} classes and {int(capacities.sum())} slots, "
                f"this pool has {self.num_classes} classes and {int(self._capacities.sum())} slots (or other "
                "capacities per class); build the pool with the capacities it was saved with"
            )
        if num_seen.shape != self._num_seen.shape or num_seen.is_floating_point() or bool((num_seen < 0).any()):
            raise ValueError(
                f"state['num_seen'] must be non-negative integers of shape ({self.num_classes},), "
                f"got shape {tuple(num_seen.shape)} and dtype {num_seen.dtype}"
            )
        total = int(self._capacities.sum())
        if features.ndim != 2 or features.shape[0] != total or not features.is_floating_point():
            raise ValueError(
                f"state['features'] must be a float tensor of shape ({total}, dim), got shape "
                f"{tuple(features.shape)} and dtype {features.dtype}"
            )
        saved_dim = features.shape[1]
        if saved_dim == 0:  # saved before the first add
            if bool((num_seen > 0).any()):
                raise ValueError("state['features'] has dim 0 but state['num_seen'] counts stored features")
            self.reset()
            return
        if self._features is not None and saved_dim != self._features.shape[1]:
            raise ValueError(
                f"state['features'] has dim {saved_dim}, but this pool stores dim {self._features.shape[1]}; "
                "build the pool with dim=None or the saved dim"
            )
        if self._features is None:
            self._allocate(saved_dim)
        self._features.copy_(features)
        self._num_seen.copy_(num_seen)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_classes={self.num_classes}, dim={self.dim}, dtype={self.dtype}, "
            f"stored={int(self.counts.sum())}/{int(self._capacities.sum())}, device={self.device})"
        )


def _check_capacities(capacities: Sequence[int] | torch.Tensor) -> torch.Tensor:
    capacities = torch.as_tensor(capacities)
    if capacities.ndim != 1 or capacities.numel() == 0:
        raise ValueError(f"capacities must be a non-empty 1-D list of per-class sizes, got shape {capacities.shape}")
    if capacities.is_floating_point() or capacities.is_complex() or capacities.dtype == torch.bool:
        raise TypeError(f"capacities must be integers (one per class), got dtype {capacities.dtype}")
    if bool((capacities < 0).any()):
        raise ValueError(f"capacities must be >= 0, got negative values at classes {torch.where(capacities < 0)[0]}")
    return capacities.to(torch.long)
