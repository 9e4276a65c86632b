import numpy as np
from sklearn.datasets import load_digits as sklearn_digits

from litforge.data.image.sources import load_digits


def test_digits_read_from_scikit_learns_file_equal_its_loader() -> None:
    data, reference = load_digits(), sklearn_digits()
    split = data.splits["train"]
    assert np.array_equal(split.tensors[0].squeeze(1).numpy(), reference.images.astype(np.float32))
    assert np.array_equal(split.tensors[1].numpy(), reference.target)
    assert data.class_names == [str(n) for n in reference.target_names]
