"""Figures the tasks save to the run dir (matplotlib without a display)."""

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def confusion_matrix_figure(matrix: np.ndarray, class_names: Sequence[str]) -> Figure:
    size = max(4.0, 0.5 * len(class_names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, labels=class_names, rotation=45, ha="right")
    ax.set_yticks(ticks, labels=class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = matrix.max() / 2 if matrix.size else 0
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            color = "white" if matrix[i, j] > threshold else "black"
            ax.text(j, i, int(matrix[i, j]), ha="center", va="center", color=color, fontsize=8)
    ax.set_title("test confusion matrix")
    fig.tight_layout()
    return fig


def predicted_vs_actual_figure(predicted: np.ndarray, actual: np.ndarray, names: Sequence[str]) -> Figure:
    n = predicted.shape[1]
    fig, axes = plt.subplots(1, n, figsize=(4.5 * n, 4.5), squeeze=False)
    for k, ax in enumerate(axes[0]):
        ax.scatter(actual[:, k], predicted[:, k], s=10, alpha=0.6)
        low = float(min(actual[:, k].min(), predicted[:, k].min()))
        high = float(max(actual[:, k].max(), predicted[:, k].max()))
        ax.plot([low, high], [low, high], color="grey", linestyle="--", linewidth=1)
        ax.set_xlabel(f"actual {names[k]}")
        ax.set_ylabel(f"predicted {names[k]}")
    fig.suptitle("test: predicted vs actual")
    fig.tight_layout()
    return fig
