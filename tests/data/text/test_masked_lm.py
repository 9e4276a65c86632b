"""Masked-LM data: blocks and lines, dynamic training masks, fixed validation masks, user files."""

from pathlib import Path

import pytest
import torch

from litforge.data.text.masked_lm import MaskedLMDataModule
from litforge.utils.errors import UserError


def data_module(tmp_path: Path, **kwargs: object) -> MaskedLMDataModule:
    settings = {"num_examples": 300, "vocab_size": 200, "max_length": 24, "batch_size": 16}
    dm = MaskedLMDataModule(
        **{**settings, **kwargs}, tokenizer_dir=str(tmp_path / "tokenizer"), data_dir=str(tmp_path / "data")
    )
    dm.setup("fit")
    return dm


def test_grouped_blocks_are_full_and_masked_about_fifteen_percent(tmp_path: Path) -> None:
    dm = data_module(tmp_path)
    lengths = {len(ids) for ids in dm.splits["train"]["input_ids"][:-1]}
    assert lengths == {24}  # every block but the last is full
    batch = next(iter(dm.train_dataloader()))
    masked = batch["labels"] != -100
    assert 0.05 < masked.float().mean() < 0.3
    assert (batch["input_ids"][masked] == dm.tokenizer.mask_token_id).float().mean() > 0.6
    assert not masked[:, 0].any()  # [CLS] is never masked


def test_training_masks_change_validation_masks_do_not(tmp_path: Path) -> None:
    dm = data_module(tmp_path, line_by_line=True)
    collate = dm.train_dataloader().collate_fn
    examples = [dm.splits["train"][i] for i in range(16)]
    first, second = (collate(examples)["labels"] != -100 for _ in range(2))
    assert not torch.equal(first, second)  # the same examples, masked anew each time
    val = [next(iter(dm.val_dataloader())) for _ in range(2)]
    assert torch.equal(val[0]["input_ids"], val[1]["input_ids"]) and torch.equal(val[0]["labels"], val[1]["labels"])
    again = data_module(tmp_path, line_by_line=True)  # a new run: the same masks, tokens from the cache
    assert torch.equal(next(iter(again.val_dataloader()))["labels"], val[0]["labels"])


def test_whole_word_masking_masks_every_piece_of_a_word(tmp_path: Path) -> None:
    dm = data_module(tmp_path, line_by_line=True, whole_word_mask=True, mlm_probability=0.5)
    batch = next(iter(dm.train_dataloader()))
    ids, labels = batch["input_ids"], batch["labels"]
    pieces = torch.tensor([t.startswith("##") for t in dm.tokenizer.convert_ids_to_tokens(range(len(dm.tokenizer)))])
    original = torch.where(labels != -100, labels, ids)
    continuation = pieces[original]
    # a word piece is masked exactly when the piece before it (same word) is
    masked = labels != -100
    assert torch.equal(masked[:, 1:][continuation[:, 1:]], masked[:, :-1][continuation[:, 1:]])
    assert continuation.any() and masked.any()


def test_local_text_file_and_errors(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat on the mat\n\nthe dog sat on the log\n" * 20)
    dm = data_module(tmp_path, source="files", train_file=str(corpus), line_by_line=True)
    assert len(dm.splits["train"]) + len(dm.splits["validation"]) + len(dm.texts["test"]) == 40
    with pytest.raises(UserError, match="data.train_file=.*unknown file type"):
        data_module(tmp_path, source="files", train_file=str(tmp_path / "corpus.md"))
    with pytest.raises(UserError, match="data.mlm_probability=1.5"):
        MaskedLMDataModule(mlm_probability=1.5)
