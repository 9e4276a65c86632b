"""Optuna studies on a PostgreSQL storage: what a sweep run from several processes relies on."""

import socket

import pytest

from tests.postgres_server import PostgresUnavailable, postgres_server


def test_server_answers_on_its_url(postgres_url: str) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(postgres_url)
    assert url.host == "127.0.0.1"
    with psycopg.connect(host=url.host, port=url.port, user=url.username, dbname=url.database) as conn:
        assert conn.execute("SELECT current_database(), 1 + 1").fetchone() == (url.database, 2)


def test_study_told_on_one_storage_is_read_back_from_another(postgres_url: str) -> None:
    import optuna

    study = optuna.create_study(
        study_name="sweep", storage=optuna.storages.RDBStorage(postgres_url), direction="maximize"
    )
    suggested = []
    for value in (0.25, 0.75):
        trial = study.ask()
        suggested.append(trial.suggest_float("lr", 1e-4, 1e-1, log=True))
        study.tell(trial, value)
    # a second storage object stands for a second sweep process reading the same study
    reader = optuna.load_study(study_name="sweep", storage=optuna.storages.RDBStorage(postgres_url))
    told = sorted(reader.trials, key=lambda t: t.number)
    assert [t.state for t in told] == [optuna.trial.TrialState.COMPLETE] * 2
    assert [t.params["lr"] for t in told] == suggested
    assert [t.value for t in told] == [0.25, 0.75]
    assert reader.best_trial.number == told[1].number
    assert reader.direction == optuna.study.StudyDirection.MAXIMIZE


def test_server_is_stopped_and_removed_when_the_tests_fail() -> None:
    try:
        with pytest.raises(RuntimeError, match="a test failed"), postgres_server() as server:
            raise RuntimeError("a test failed")
    except PostgresUnavailable as e:
        pytest.skip(f"no PostgreSQL server: {e}")
    assert not server.root.exists()
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", server.port), timeout=5):
        pass
