from collections.abc import Iterator

import pytest
import torch

# fixtures any test file may ask for: postgres_url (a throw-away PostgreSQL server)
pytest_plugins = ["tests.postgres_server"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    skip_mps = pytest.mark.skip(reason="needs an Apple MPS device")
    for item in items:
        if item.get_closest_marker("gpu") and not torch.cuda.is_available():
            item.add_marker(skip_gpu)
        if item.get_closest_marker("mps") and not torch.backends.mps.is_available():
            item.add_marker(skip_mps)


def _hub_reachable() -> bool:
    import socket

    try:
        socket.create_connection(("huggingface.co", 443), timeout=3).close()
        return True
    except OSError:
        return False


def pytest_configure(config: pytest.Config) -> None:
    config._litforge_online = None


@pytest.fixture(autouse=True)
def _skip_network_tests_offline(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("network") is None:
        return
    if request.config._litforge_online is None:
        request.config._litforge_online = _hub_reachable()
    if not request.config._litforge_online:
        pytest.skip("needs the Hugging Face hub, which is not reachable")


@pytest.fixture
def one_thread() -> Iterator[None]:
    """torch on one thread for this test (`pytestmark = pytest.mark.usefixtures("one_thread")`)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _no_ddp_launch_state_leaks() -> Iterator[None]:
    """A test that leaves Lightning's launcher variables in os.environ makes every later command of its
    worker a rank of a DDP launch that never comes: fail that test instead of hanging a later one."""
    import os

    from litforge.utils.ddp import LAUNCHER_ENV

    before = {key: os.environ.get(key) for key in LAUNCHER_ENV}
    yield
    after = {key: os.environ.get(key) for key in LAUNCHER_ENV}
    _restore(before)
    assert after == before, f"the test left DDP launcher variables in os.environ: {after}"


def _mlflow_variables_put_back() -> Iterator[None]:
    """mlflow.set_tracking_uri and litforge's HTTP settings write MLFLOW_* into os.environ, where every
    later command of the worker would find them (a test's server, stopped since): put them back."""
    import os

    before = {key: value for key, value in os.environ.items() if key.startswith("MLFLOW_")}
    yield
    for key in [key for key in os.environ if key.startswith("MLFLOW_") and key not in before]:
        del os.environ[key]
    os.environ.update(before)


# after each test, and after each file's own fixtures (a module-scoped server or store)
_mlflow_variables_of_a_test = pytest.fixture(autouse=True)(_mlflow_variables_put_back)
_mlflow_variables_of_a_file = pytest.fixture(autouse=True, scope="module")(_mlflow_variables_put_back)


def _restore(values: dict[str, str | None]) -> None:
    import os

    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
