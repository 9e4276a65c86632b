"""Loading a Hugging Face hub data set, with one clear error for every data module."""

from typing import Any

from litforge.utils.errors import UserError


def load_hub_dataset(name: str, config_name: str | None, cache_dir: str) -> Any:
    """All splits of `name` (a DatasetDict), downloaded once into `cache_dir`."""
    import datasets

    try:
        return datasets.load_dataset(name, config_name, cache_dir=str(cache_dir))
    # RuntimeError: a script-based data set, which datasets>=4 no longer runs
    except (OSError, ValueError, RuntimeError) as err:
        raise UserError(
            f"data.name={name} (data.config_name={config_name}): the hub data set could not be loaded "
            f"({str(err).splitlines()[0][:160]}). Check the id (e.g. stanfordnlp/sst2) and that the hub "
            "is reachable once to download it."
        ) from err
