"""What the tasks on a plain nn.Module share: the net built from its config, flat prediction records."""

from collections.abc import Sequence
from typing import Any

import hydra
from torch import Tensor, nn

from litforge.nets.init import init_weights
from litforge.tasks.base import TaskModule


class NetTaskModule(TaskModule):
    """A task on `net`, the config of an nn.Module taking `input_shape` and `num_outputs` (litforge.nets).
    Subclasses call `build_net` in `__init__`; their predictions are one csv row an input."""

    prediction_file = "predictions.csv"

    def build_net(
        self,
        net: dict[str, Any],
        init: str,
        input_shape: int | Sequence[int],
        num_outputs: int,
        cardinalities: Sequence[int] | None = None,
    ) -> None:
        """`self.net`, its weights initialised by `init` (see litforge.nets.init); a table's categorical
        columns give `cardinalities` (codes per column), passed to the net only then."""
        extra = {} if cardinalities is None else {"cardinalities": list(cardinalities)}
        self.net: nn.Module = hydra.utils.instantiate(net, input_shape=input_shape, num_outputs=num_outputs, **extra)
        init_weights(self.net, init)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
