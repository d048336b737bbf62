# Copyright 2025 The semscale-hf developers.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Semantic scale: per-class feature-manifold volume and semantic-scale imbalance (Ma et al., ICLR 2023)."""

# `evaluate.load` copies this file into its modules cache and imports the copy, so every import here is absolute.
# The math lives in the installed package; this module only adapts evaluate's inputs to it.
import math
import numbers

import datasets
import evaluate
import numpy as np
import torch

from semscale_hf.metrics.functional import semantic_scale_metric


_DESCRIPTION = """
The semantic scale of a class is the volume of its feature manifold, in bits (Ma et al., "Delving into Semantic Scale
Imbalance", ICLR 2023). For the m embeddings of one class, stacked as the rows of Z,

    S(Z) = 1/2 * log2 det(I + alpha/m * Zc^T Zc),    Zc = Z - mean(Z),

with alpha the feature dimension by default. Classes with a small scale are the ones a classifier tends to
under-serve, even when every class has the same number of examples. The metric returns each class's scale, how unequal
the scales are (largest over smallest, coefficient of variation, KL divergence from uniform) and, given predictions,
per-class accuracy and its correlation with the scales.

For large embedding sets call `semscale_hf.semantic_scale_metric` on tensors directly: it returns the same dict,
skips evaluate's Arrow cache (a copy of every embedding on disk) and runs on the tensors' device, e.g. a GPU.
"""

_KWARGS_DESCRIPTION = """
Args:
    embeddings (`list` of `list` of `float`, or a 2-D array/tensor): one feature vector per example, all of the same
        length, e.g. the input of the classification head.
    references (`list` of `int`): the class id of each example, in `[0, num_classes)`; -100 is ignored (its
        prediction too). `labels=` is accepted as an alias. (Inside `evaluate.combine([...])` pass `references=` and
        `embeddings=` to `add_batch`.)
    predictions (`list` of `int`, *optional*): the predicted class id of each example; adds per-class accuracy and its
        correlation with the scales. Pass it for every batch or for none.
    num_classes (`int`, *optional*): number of classes; defaults to the largest label or prediction plus one.
    alpha (`float` or `"dim"`, *optional*, defaults to `"dim"`): the constant in `I + alpha/m Zc^T Zc`; `"dim"` uses
        the feature dimension.
    center (`bool`, *optional*, defaults to `True`): subtract each class's mean embedding first.
    normalize (`bool`, *optional*, defaults to `False`): L2-normalise each embedding first.
    min_count (`int`, *optional*, defaults to 2): classes with fewer examples are not measured.

Returns:
    semantic_scales (`list` of `float` or `None`): per-class scale in bits; `None` for a class with fewer than
        `min_count` examples (unmeasured).
    normalized_scales (`list` of `float` or `None`): scale over the largest measured scale, in `[0, 1]`.
    class_counts (`list` of `int`): examples per class.
    num_measured (`int`): number of measured classes.
    scale_imbalance_ratio (`float`): largest over smallest measured scale, at least 1; 1 means balanced. NaN with
        fewer than two measured classes, as are the next two.
    scale_cv (`float`): coefficient of variation of the measured scales, at least 0; 0 means balanced.
    scale_kl_uniform (`float`): KL divergence (nats) of `S_c / sum_k S_k` from uniform, at least 0.
    accuracy (`float`): overall accuracy (only with `predictions`).
    per_class_accuracy (`list` of `float` or `None`): accuracy of each class, `None` without examples (only with
        `predictions`).
    pearson_scale_accuracy (`float`), spearman_scale_accuracy (`float`): correlation of scale with per-class accuracy
        over the measured classes, in `[-1, 1]`; NaN when undefined (only with `predictions`).

Examples:

    >>> import evaluate
    >>> from semscale_hf.metrics import SEMANTIC_SCALE_PATH
    >>> semantic_scale = evaluate.load(SEMANTIC_SCALE_PATH)
    >>> embeddings = [[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0], [0.0, -2.0]]
    >>> results = semantic_scale.compute(
    ...     embeddings=embeddings, references=[0, 0, 1, 1], predictions=[0, 1, 1, 1], alpha=1.0
    ... )
    >>> [round(s, 4) for s in results["semantic_scales"]], results["per_class_accuracy"]
    ([0.5, 1.161], [0.5, 1.0])
    >>> round(results["scale_imbalance_ratio"], 4)
    2.3219
"""

_CITATION = """
@inproceedings{ma2023delving,
  title     = {Delving into Semantic Scale Imbalance},
  author    = {Ma, Yanbiao and Jiao, Licheng and Liu, Fang and Li, Yuxin and Yang, Shuyuan and Liu, Xu},
  booktitle = {The Eleventh International Conference on Learning Representations (ICLR)},
  year      = {2023},
  url       = {https://openreview.net/forum?id=07tc5kKRIo}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class SemanticScale(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            module_type="metric",
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            # Each embedding is stored as one bytes value (raw little-endian float32), because Arrow encodes lists of
            # Python floats slowly: for 50,000 x 768 this storage adds about 2 s to the math, float lists about 30 s
            # (benchmarks/bench_metric.py). add_batch/add accept lists, arrays and tensors and do the conversion.
            # `predictions` is optional: nulls when absent.
            features=datasets.Features(
                {
                    "embeddings": datasets.Value("large_binary"),
                    "references": datasets.Value("int64"),
                    "predictions": datasets.Value("int64"),
                }
            ),
            reference_urls=["https://arxiv.org/abs/2212.14613", "https://openreview.net/forum?id=07tc5kKRIo"],
        )

    def compute(self, *, predictions=None, references=None, **kwargs):
        """As `evaluate.Metric.compute`; `labels=` is an alias of `references=`."""
        references = _references(references, kwargs.pop("labels", None))
        return super().compute(predictions=predictions, references=references, **kwargs)

    def add_batch(self, *, predictions=None, references=None, **kwargs):
        """Adds a batch of `embeddings` (2-D), `references` (or `labels`) and, optionally, `predictions`."""
        references = _references(references, kwargs.pop("labels", None))
        batch = _prepare_batch(predictions=predictions, references=references, **kwargs)
        return super().add_batch(**batch)

    def add(self, *, prediction=None, reference=None, **kwargs):
        """Adds one example: `embeddings` (one vector), `reference` (one id; or `labels`) and optional `prediction`."""
        if prediction is not None:
            kwargs.setdefault("predictions", prediction)
        # evaluate's own add takes references= (plural) too: an alias of reference=, as predictions= is
        references = kwargs.pop("references", None)
        if references is not None and reference is not None:
            raise ValueError("semantic_scale's add takes the class id as reference= or references=, not both")
        reference = _references(reference if references is None else references, kwargs.pop("labels", None))
        one = {name: [value] for name, value in kwargs.items() if value is not None}
        if "embeddings" in one:
            one["embeddings"] = _as_rows(one["embeddings"][0])
        batch = _prepare_batch(references=None if reference is None else [reference], **one)
        return super().add(**{name: values[0] for name, values in batch.items()})

    def _compute(
        self,
        embeddings,
        references,
        predictions=None,
        num_classes=None,
        alpha="dim",
        center=True,
        normalize=False,
        min_count=2,
    ):
        lengths = {len(row) for row in embeddings}
        if len(lengths) > 1:
            raise ValueError(
                "embeddings must all have the same length, got lengths "
                f"{sorted(length // _ITEMSIZE for length in lengths)} across the added batches"
            )
        dim = lengths.pop() // _ITEMSIZE if lengths else 0
        matrix = np.frombuffer(b"".join(embeddings), dtype=_DTYPE).reshape(len(embeddings), dim)
        if predictions is not None:
            missing = sum(p is None for p in predictions)
            if missing == len(predictions):
                predictions = None
            elif missing:
                raise ValueError(
                    f"predictions were given for only {len(predictions) - missing} of {len(predictions)} examples; "
                    "pass predictions with every batch or with none"
                )
        return semantic_scale_metric(
            torch.from_numpy(matrix.copy()),
            references,
            predictions,
            num_classes=num_classes,
            alpha=alpha,
            center=center,
            normalize=normalize,
            min_count=min_count,
        )


_DTYPE = np.dtype("<f4")
_ITEMSIZE = _DTYPE.itemsize


def _references(references, labels):
    """`references=`, or its alias `labels=`; not both."""
    if labels is None:
        return references
    if references is not None:
        raise ValueError("semantic_scale takes the class ids as references= or as labels=, not both")
    return labels


def _prepare_batch(*, embeddings=None, references=None, predictions=None, **unexpected):
    """Checks one batch and converts it to what the Arrow cache stores: bytes rows and lists of ints."""
    if unexpected:
        raise ValueError(
            f"Bad inputs for semantic_scale: {sorted(unexpected)}; expected embeddings, references (or labels) and "
            "optional predictions (options such as alpha or num_classes go to compute())"
        )
    if embeddings is None or references is None:
        raise ValueError("semantic_scale needs both embeddings= and references= (or labels=)")
    matrix = _as_matrix(embeddings)
    num_rows = matrix.shape[0]
    references = _class_ids(references, "references", num_rows)
    predictions = [None] * num_rows if predictions is None else _class_ids(predictions, "predictions", num_rows)
    return {"embeddings": [row.tobytes() for row in matrix], "references": references, "predictions": predictions}


def _as_rows(vector):
    """One embedding as a (1, dim) batch."""
    if isinstance(vector, torch.Tensor):
        vector = _to_numpy(vector)
    return np.asarray(vector, dtype=_DTYPE).reshape(1, -1)


def _to_numpy(tensor):
    tensor = tensor.detach().cpu()
    if tensor.is_floating_point() and tensor.dtype != torch.float32:
        tensor = tensor.float()  # numpy has no bfloat16
    return tensor.numpy()


def _as_matrix(embeddings):
    if isinstance(embeddings, np.ndarray) and embeddings.dtype == object:
        embeddings = list(embeddings)  # e.g. df["emb"].to_numpy(), one array per row
    if isinstance(embeddings, torch.Tensor):
        embeddings = _to_numpy(embeddings)
    elif isinstance(embeddings, (list, tuple)):
        embeddings = [_to_numpy(row) if isinstance(row, torch.Tensor) else row for row in embeddings]
    try:
        matrix = np.asarray(embeddings, dtype=_DTYPE)
    except ValueError:
        rows = list(embeddings)
        lengths = sorted({len(row) if hasattr(row, "__len__") else 1 for row in rows})
        raise ValueError(
            f"embeddings must all have the same length and hold numbers, got rows of lengths {lengths}"
        ) from None
    if matrix.ndim != 2 and matrix.size == 0:
        matrix = matrix.reshape(0, 0)
    if matrix.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (batch, dim), got shape {matrix.shape}")
    finite = np.isfinite(matrix).all(axis=1)
    if not finite.all():
        raise ValueError(
            f"embeddings contain NaN or inf in {int((~finite).sum())} of {len(matrix)} rows of this batch; "
            "check the model for divergence or filter those examples out"
        )
    return matrix


def _class_ids(values, name, num_rows):
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one class id per example), got shape {array.shape}")
    if len(array) != num_rows:
        raise ValueError(f"got {num_rows} embeddings but {len(array)} {name}")
    if array.size and (array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer)):
        # Arrow would otherwise truncate 1.7 to 1 without a word
        return [_class_id(v, name) for v in values]
    return array.tolist()


def _class_id(value, name):
    if (isinstance(value, (torch.Tensor, np.ndarray)) and value.ndim == 0) or isinstance(value, np.generic):
        value = value.item()  # np.False_ reads as False in the message
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        shown = "NaN" if isinstance(value, float) and math.isnan(value) else repr(value)
        raise TypeError(
            f"{name} must be integer class ids, got {shown} of type {type(value).__name__}; "
            "cast them to int first (e.g. .long() or .astype(int))"
        )
    return int(value)
