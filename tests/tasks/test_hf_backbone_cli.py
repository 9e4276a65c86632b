"""A pretrained backbone from a local folder, as users run it: the folder's own size wins over the
from-scratch config of the experiment it is built on, and a broken folder is refused clearly."""

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch

from tests.helpers import QUIET, check_ok, run_cli, run_dirs

ONE_THREAD = {"OMP_NUM_THREADS": "1"}
KEY = "model.backbone.pretrained_model_name_or_path"
PEOPLE = ["Angela Merkel", "John Smith", "Maria Garcia", "Ken Sato"]
PLACES = ["Paris", "Berlin", "Lagos", "Lima"]
GOOD = ["a great film", "wonderful acting , truly moving", "I loved every minute", "a fine, warm story"]
BAD = ["a dull film", "terrible acting , truly boring", "I hated every minute", "a weak, cold story"]


def ner_sentences() -> list[list[tuple[str, str]]]:
    sentences = []
    for i in range(40):
        first, last = PEOPLE[i % 4].split()
        place = PLACES[(i // 4) % 4]
        sentences.append([(first, "B-PER"), (last, "I-PER"), ("visited", "O"), (place, "B-LOC"), (".", "O")])
    return sentences


def write_conll(path: Path) -> Path:
    """CoNLL-2003 layout: token, POS, chunk, NER tag; -DOCSTART- and blank lines between sentences."""
    lines = ["-DOCSTART- -X- -X- O", ""]
    for sentence in ner_sentences():
        lines += [f"{token} NNP B-NP {tag}" for token, tag in sentence] + [""]
    path.write_text("\n".join(lines))
    return path


def write_reviews(path: Path) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for i in range(60):
            writer.writerow([GOOD[i % 4], "positive"] if i % 2 else [BAD[i % 4], "negative"])
    return path


@pytest.fixture(scope="module")
def small_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A BERT of another size than tiny_bert (hidden 32, 1 layer, 2 heads) with its own WordPiece
    tokenizer, saved with save_pretrained as a pretraining run would leave it."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertForMaskedLM, PreTrainedTokenizerFast

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=False)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    texts = [" ".join(t for t, _ in s) for s in ner_sentences()] + GOOD + BAD
    tokenizer.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=300, special_tokens=special))
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tokenizer.token_to_id("[CLS]")), ("[SEP]", tokenizer.token_to_id("[SEP]"))],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        model_max_length=128,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    folder = tmp_path_factory.mktemp("small_bert")
    fast.save_pretrained(folder)
    config = BertConfig(
        vocab_size=len(fast),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertForMaskedLM(config).save_pretrained(folder)
    return folder


def train_and_eval(tmp_path: Path, overrides: list[str], metric: str) -> Path:
    """Train through the CLI, check metrics.json, evaluate the best checkpoint; returns the checkpoint."""
    common = [*QUIET, f"paths.data_dir={tmp_path / 'data'}"]
    train = [*overrides, "trainer.max_epochs=1", "callbacks.lr_monitor=null", *common]
    proc = run_cli("litforge.train", train, tmp_path, env=ONE_THREAD)
    check_ok(proc)
    # the from-scratch sizes of tiny_bert are named as ignored, not passed to from_pretrained
    assert "hidden_size=64 (the model's: 32)" in proc.stdout and "num_hidden_layers=2 (the model's: 1)" in proc.stdout
    (run,) = run_dirs(tmp_path)
    trained = json.loads((run / "metrics.json").read_text())
    assert metric in trained
    best = next((run / "checkpoints").glob("best_*.ckpt"))
    check_ok(run_cli("litforge.eval", [f"ckpt_path={best}", *common], tmp_path, env=ONE_THREAD))
    (evaluated,) = run_dirs(tmp_path, "eval")
    assert json.loads((evaluated / "metrics.json").read_text())[metric] == pytest.approx(trained[metric])
    return best


def assert_has_the_folders_size(best: Path, folder: Path) -> None:
    checkpoint = torch.load(best, map_location="cpu", weights_only=True)
    config = checkpoint["hyper_parameters"]["backbone"]["config"]
    assert (config["hidden_size"], config["num_hidden_layers"], config["num_attention_heads"]) == (32, 1, 2)
    weights = checkpoint["state_dict"]
    (embeddings,) = [v for k, v in weights.items() if k.endswith("word_embeddings.weight")]
    assert embeddings.shape[1] == 32
    assert not any(".layer.1." in k for k in weights)
    # the run's tokenizer is the folder's, not one trained on the data
    run_tokenizer = best.parent.parent / "tokenizer" / "tokenizer.json"
    vocab = [json.loads(p.read_text())["model"]["vocab"] for p in (run_tokenizer, folder / "tokenizer.json")]
    assert vocab[0] == vocab[1] and embeddings.shape[0] == len(vocab[1])


def test_ner_on_a_conll_file_with_a_pretrained_folder(tmp_path: Path, small_bert: Path) -> None:
    conll = write_conll(tmp_path / "my.conll")
    overrides = ["experiment=ner_offline", "data=conll_file", f"data.train_file={conll}", f"{KEY}={small_bert}"]
    best = train_and_eval(tmp_path, overrides, "test/f1")
    assert_has_the_folders_size(best, small_bert)


def test_text_classification_on_a_csv_with_a_pretrained_folder(tmp_path: Path, small_bert: Path) -> None:
    reviews = write_reviews(tmp_path / "reviews.csv")
    overrides = ["experiment=text_clf_offline", "data=text_file", f"data.train_file={reviews}", f"{KEY}={small_bert}"]
    best = train_and_eval(tmp_path, [*overrides, "data.max_length=32"], "test/acc")
    assert_has_the_folders_size(best, small_bert)


def test_a_folder_without_config_json_exits_2_and_leaves_no_run(tmp_path: Path, small_bert: Path) -> None:
    folder = tmp_path / "tokenizer_only"
    folder.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(small_bert / name, folder / name)
    conll = write_conll(tmp_path / "my.conll")
    overrides = ["experiment=ner_offline", "data=conll_file", f"data.train_file={conll}", f"{KEY}={folder}", *QUIET]
    proc = run_cli("litforge.train", overrides, tmp_path, env=ONE_THREAD)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert f"{KEY}={folder}: the folder has no config.json" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not run_dirs(tmp_path)


def test_weights_of_another_shape_than_config_json_are_a_user_error(tmp_path: Path, small_bert: Path) -> None:
    # in-process: the CLI turns any UserError into exit 2 (test above); this one fails after the data is read
    from transformers import AutoModelForSequenceClassification

    from litforge.tasks.hf_backbone import build_backbone
    from litforge.utils.errors import UserError

    folder = tmp_path / "mismatched"
    shutil.copytree(small_bert, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "intermediate_size": 48}))
    backbone = {"pretrained_model_name_or_path": str(folder), "config": {}}
    with pytest.raises(UserError, match="3 weights have another shape than its config.json gives") as err:
        build_backbone(AutoModelForSequenceClassification, backbone, None, num_labels=2)
    assert str(err.value).startswith(f"{KEY}={folder}:") and "intermediate.dense" in str(err.value)
