"""Plain float64 NumPy loop references for the math, written as directly as possible from method.md."""

import numpy as np


def reference_scale(features, alpha="dim", center=True, normalize=False):
    z = np.asarray(features, dtype=np.float64)
    m, d = z.shape
    a = float(d) if alpha == "dim" else float(alpha)
    if normalize:
        norms = np.linalg.norm(z, axis=1, keepdims=True)
        z = z / np.maximum(norms, 1e-12)
    if center:
        z = z - z.mean(axis=0)
    sign, logdet = np.linalg.slogdet(np.eye(d) + (a / m) * z.T @ z)
    assert sign > 0
    return 0.5 * logdet / np.log(2.0)


def reference_class_scales(features, labels, num_classes, alpha="dim", center=True, normalize=False, min_count=2):
    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    out = np.full(num_classes, np.nan)
    for c in range(num_classes):
        rows = features[labels == c]
        if len(rows) >= min_count:
            out[c] = reference_scale(rows, alpha, center, normalize)
    return out


def reference_weights(scales, power=1.0):
    scales = np.asarray(scales, dtype=np.float64)
    measured = np.isfinite(scales)
    raw = np.ones_like(scales)
    raw[measured] = scales[measured] ** (-power)
    w = raw / raw[measured].mean()
    w[~measured] = w[measured].max()
    return w
