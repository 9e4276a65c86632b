"""experiment=digits_transfer as `make transfer` runs it (three CLI runs): a backbone pre-trained on
digits 0-4 and fine-tuned on few labels of digits 5-9 beats the same network from scratch."""

from pathlib import Path

import pytest

from tests.benchmarks.bench_transfer import transfer

SEED = ["seed=0"]


@pytest.mark.slow
def test_fine_tuned_beats_from_scratch_on_the_same_few_labels(tmp_path: Path) -> None:
    accuracy = transfer(tmp_path, SEED)
    assert accuracy["pretrain"] > 0.8, accuracy
    assert accuracy["finetune"] > accuracy["scratch"] + 0.05, accuracy
