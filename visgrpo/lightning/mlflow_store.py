"""The embedded MLflow store (``sqlite:///mlflow.db``), created once and safely.

Several ``visgrpo fit`` processes started together on a fresh SQLite store would each run
MLflow's schema creation / migration and create the experiment, and all but one die
("Online migration expected to match one row ... 'alembic_version'", or "experiment already
exists"). :func:`prepare_store` does both under an exclusive file lock next to the database
(``<db>.lock``, ``fcntl.flock``), so the first process creates the schema and the experiment
and the others find them. The CLI calls it for every MLFlowLogger in the config before the
loggers are instantiated (``VisgrpoCLI.before_instantiate_classes``).
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

SQLITE_PREFIX = "sqlite:///"


def sqlite_path(tracking_uri: str | None) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI (``None`` for any other store)."""
    if not tracking_uri or not tracking_uri.startswith(SQLITE_PREFIX):
        return None
    path = tracking_uri[len(SQLITE_PREFIX):].split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


@contextlib.contextmanager
def store_lock(db: Path) -> Iterator[None]:
    """Exclusive ``flock`` on ``<db>.lock`` (released when the block exits or the process dies)."""
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def prepare_store(tracking_uri: str | None, experiment_name: str | None = None,
                  artifact_location: str | None = None) -> None:
    """Create (or upgrade) the SQLite store at ``tracking_uri`` and its experiment, under the lock.

    No-op for non-SQLite stores (a tracking server serialises its clients itself).
    """
    db = sqlite_path(tracking_uri)
    if db is None:
        return
    from mlflow.tracking import MlflowClient

    with store_lock(db):
        client = MlflowClient(tracking_uri)  # the store: schema created / migrated here
        if experiment_name and client.get_experiment_by_name(experiment_name) is None:
            client.create_experiment(experiment_name, artifact_location=artifact_location)
