"""What the Hugging Face text data modules share: the three sources, split fractions, reading only a
test file once a checkpoint's state is loaded, the run's tokenizer, loaders and the checkpointed
state (tokenizer files, and label names for the labelled tasks)."""

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning.pytorch as L
from torch.utils.data import DataLoader, Sampler

from litforge.data.loaders import EpochShuffle, own_generator, resumable_loader
from litforge.data.splits import check_fractions
from litforge.data.text.predict_inputs import require_trained_tokenizer
from litforge.data.text.sources import check_training_file
from litforge.data.text.tokenizer import run_tokenizer, tokenizer_files, tokenizer_from_files
from litforge.utils.errors import UserError

log = logging.getLogger(__name__)

SOURCES = ("generated", "hub", "files")
SPLITS = ("train", "validation", "test")
STAGE_SPLITS = {"fit": ("train", "validation"), "validate": ("validation",), "test": ("test",)}


@contextmanager
def preparing(cache_dir: Path) -> Iterator[None]:
    """Held while a process reads, trains a tokenizer on and tokenises data cached in `cache_dir`:
    the first process of a node (DDP rank 0, or whichever starts first under torchrun, SLURM or a
    parallel sweep) does the work, the others wait here and then read its cache. An OS file lock,
    so a killed holder releases it."""
    from filelock import FileLock, Timeout

    cache_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(cache_dir / ".prepare.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("another process is preparing the data in %s: waiting for it, then reading its cache", cache_dir)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


class HFTextDataModule(L.LightningDataModule):
    """A text data module: subclasses say how each source loads (`_load_generated`, `_load_files`,
    `_load_hub`, `_test_file`), how raw splits become checked examples (`_prepare`), and how those
    are encoded (`_encode`, `_predict_examples`) and batched (`_collator`).

    The constructor takes and checks the config keys every text module has (the sources, splits,
    tokenizer files, loaders) and saves them with the subclass's own as hyperparameters: a subclass
    lists its own keys (and `vocab_size`, `lowercase`, `max_length`, whose defaults differ by task)
    and hands the rest on as `**common`.
    """

    # the config's example of a hub id, for the message when data.name is missing
    hub_example = ""
    # file kind named when testing a checkpoint needs the training file back (data.test_path=<...>)
    file_kind = "file"
    # where tokenizers trained on the training text are cached, under data_dir
    cache = "text_cache"
    # whether label names (`id2label`) are part of the data's state, beside the tokenizer
    labelled = True
    # what the label names are called in messages
    label_kind = "label names"

    def __init__(
        self,
        *,
        vocab_size: int,
        lowercase: bool,
        max_length: int,
        source: str = "generated",
        name: str | None = None,
        config_name: str | None = None,
        train_split: str = "train",
        val_split: str | None = "validation",
        test_split: str | None = "test",
        train_file: str | None = None,
        val_file: str | None = None,
        test_file: str | None = None,
        test_path: str | None = None,
        tokenizer: str | None = None,
        tokenizer_dir: str = "tokenizer",
        data_dir: str = "data",
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        seed: int = 42,
        batch_size: int = 32,
        num_workers: int = 0,
        pin_memory: bool = False,
        predict_path: str | None = None,
    ) -> None:
        super().__init__()
        # Lightning collects the arguments of this constructor and of the subclass's that called it
        self.save_hyperparameters()
        if source not in SOURCES:
            raise UserError(f"data.source={source!r} is not one of {SOURCES}")
        check_fractions(val_fraction, test_fraction)
        if batch_size < 1 or max_length < 4:
            raise UserError(f"data.batch_size={batch_size}, data.max_length={max_length}: give at least 1 and 4")
        # an attribute, so Lightning's batch-size finder can scale it
        self.batch_size = batch_size
        self.id2label: list[str] | None = None
        self.tokenizer: Any = None
        self.tokenizer_files: dict[str, str] | None = None
        self.examples: dict[str, Any] = {}
        self.splits: dict[str, Any] = {}

    @property
    def test_path(self) -> str | None:
        return self.hparams.test_path or self.hparams.test_file

    def _restored(self) -> bool:
        """Whether a checkpoint's state is loaded, so new data can be read without the training data."""
        return self.tokenizer is not None and (self.id2label is not None or not self.labelled)

    def _load_generated(self) -> dict[str, Any]:
        raise NotImplementedError

    def _load_files(self) -> dict[str, Any]:
        """The user's files, the test file (`test_path`) included."""
        raise NotImplementedError

    def _load_hub(self, splits: dict[str, str | None]) -> dict[str, Any]:
        raise NotImplementedError

    def _test_file(self) -> Any:
        raise NotImplementedError

    def _load(self) -> dict[str, Any]:
        hp = self.hparams
        if hp.source == "generated":
            raw = self._load_generated()
        elif hp.source == "files":
            return self._load_files()
        elif not hp.name:
            raise UserError(f"data.source=hub needs data.name, a hub id such as {self.hub_example}")
        else:
            test_split = None if self.test_path else hp.test_split
            raw = self._load_hub({"train": hp.train_split, "validation": hp.val_split, "test": test_split})
        if self.test_path:
            raw["test"] = self._test_file()
        return raw

    def prepare_data(self) -> None:
        # a checkpoint predicting or scoring a file of its own needs no download
        own_files = self._restored() and (self.hparams.predict_path or self.test_path)
        if self.hparams.source == "hub" and not own_files:
            self._load()

    def _read(self, roles: tuple[str, ...]) -> dict[str, Any]:
        """The raw splits `roles` need: a restored module with a test file reads only that for
        testing, else every split is read (`_prepare` cuts val/test from training where missing)."""
        restored_test = roles == ("test",) and self._restored()
        if restored_test and self.test_path:
            return {"test": self._test_file()}
        if restored_test:
            check_training_file(self.hparams.source, self.hparams.train_file, self.file_kind)
        return self._load()

    def _prepare(self, raw: dict[str, Any]) -> dict[str, Any]:
        """The raw splits as checked examples, all checked before anything is written."""
        raise NotImplementedError

    def _training_texts(self) -> list[str]:
        """The training text a tokenizer is trained on."""
        raise NotImplementedError

    def _encode(self, role: str) -> Any:
        raise NotImplementedError

    def _set_tokenizer(self, tokenizer: Any, files: dict[str, str] | None = None) -> None:
        self.tokenizer = tokenizer
        self.tokenizer_files = files or tokenizer_files(tokenizer)

    def setup(self, stage: str | None = None) -> None:
        if stage == "predict":
            if "predict" not in self.splits:
                require_trained_tokenizer(self.tokenizer, f" and {self.label_kind}" if self.labelled else "")
                self.splits["predict"] = self._predict_examples()
            return
        roles = STAGE_SPLITS.get(stage or "", SPLITS)
        if all(role in self.splits for role in roles):
            return
        with preparing(Path(self.hparams.data_dir) / self.cache):
            if any(role not in self.examples for role in roles):
                self.examples = self._prepare(self._read(roles))
            if self.tokenizer is None:
                self._set_tokenizer(run_tokenizer(self.hparams, self._training_texts, self.cache))
            for role in roles:
                if role not in self.splits:
                    self.splits[role] = self._encode(role)

    def _predict_examples(self) -> list[dict[str, Any]]:
        """The inputs `predict_path` names, encoded in memory (nothing cached for one-off inputs)."""
        raise NotImplementedError

    def _item_examples(self, items: list[Any], ids: list[str]) -> list[dict[str, Any]]:
        """In-memory inputs (texts) encoded as `_predict_examples` encodes a file's."""
        raise NotImplementedError

    def predict_batch(self, items: Sequence[Any], ids: Sequence[str] | None = None) -> dict[str, Any]:
        """One batch of in-memory texts, as `predict_dataloader` would give it (before the device
        transfer); ids default to each item's index, "0", "1", ..."""
        require_trained_tokenizer(self.tokenizer, f" and {self.label_kind}" if self.labelled else "")
        items = list(items)
        if not items:
            raise UserError("texts: give at least one text")
        ids = [str(i) for i in range(len(items))] if ids is None else [str(i) for i in ids]
        return self._predict_collator()(self._item_examples(items, ids))

    def predict_schema(self) -> dict[str, Any]:
        """What a predict input must look like, for clients (e.g. the server's /metadata)."""
        return {"max_length": self.hparams.max_length}

    def _collator(self) -> Any:
        raise NotImplementedError

    def _predict_collator(self) -> Any:
        raise NotImplementedError

    def _train_sampler(self) -> Sampler:
        return EpochShuffle(len(self.splits["train"]), self.hparams.seed)

    def _train_collator(self) -> Any:
        return self._collator()

    def _options(self) -> dict[str, Any]:
        hp = self.hparams
        return {
            "num_workers": hp.num_workers,
            "pin_memory": hp.pin_memory,
            "persistent_workers": hp.num_workers > 0,
            "generator": own_generator(hp.seed),
        }

    def _loader(self, role: str, collate: Any) -> DataLoader:
        return DataLoader(self.splits[role], batch_size=self.batch_size, collate_fn=collate, **self._options())

    def train_dataloader(self) -> DataLoader:
        train, collate = self.splits["train"], self._train_collator()
        return resumable_loader(
            train, self.batch_size, self._train_sampler(), self.trainer, collate_fn=collate, **self._options()
        )

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", self._collator())

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self._collator())

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict", self._predict_collator())

    def model_kwargs(self) -> dict[str, Any]:
        """What the model needs from the data: the tokenizer's files (and label names)."""
        return self.state_dict()

    def state_dict(self) -> dict[str, Any]:
        """What eval and predict need besides the weights: label names and the tokenizer's files."""
        if self.labelled:
            return {"id2label": self.id2label, "tokenizer_files": self.tokenizer_files}
        return {"tokenizer_files": self.tokenizer_files}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.labelled:
            self.id2label = state["id2label"]
        self._set_tokenizer(tokenizer_from_files(state["tokenizer_files"]), state["tokenizer_files"])
