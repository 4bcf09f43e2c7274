"""Concurrency: readers share an LMDB; a writer never touches an existing one.

- the train and the test net of one solver read the same LMDB;
- two training processes read one (read-only) LMDB at the same time;
- convert_imageset into an existing database refuses and leaves it unchanged,
  also while it is being read; a second writer to a database being written
  refuses rather than deleting the first one's work.
"""

import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from caffepy.errors import DataError
from tests.bad_inputs.recipes import image, mlp_training

ROOT = Path(__file__).resolve().parents[1]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    )
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    return env


def cli(*args, cwd):
    return subprocess.Popen(
        [sys.executable, "-m", "caffepy.cli", *args],
        cwd=cwd,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def digest(folder):
    """A hash of every file in ``folder`` (names and contents)."""
    h = hashlib.sha256()
    for path in sorted(Path(folder).rglob("*")):
        h.update(str(path.relative_to(folder)).encode())
        if path.is_file():
            h.update(path.read_bytes())
    return h.hexdigest()


def _close_data_layers(solver):
    for net in [solver.net, *solver.test_nets]:
        for layer in net.data_layers:
            layer.close()


def test_train_and_test_nets_read_the_same_lmdb(tmp_path, monkeypatch):
    import caffepy

    mlp_training(tmp_path, max_iter=30, test_iter=5, test_interval=10, snapshot=0)
    monkeypatch.chdir(tmp_path)
    solver = caffepy.get_solver("solver.prototxt")
    try:
        train_layer = solver.net.layer_dict["data"]
        test_layer = solver.test_nets[0].layer_dict["data"]
        assert train_layer.source.path == test_layer.source.path
        solver.solve()
        assert solver.iter == 30
        assert dict(zip(["loss", "acc"], solver.mean_scores[0]))["acc"] > 0.5
        # Each reader keeps its own cursor over the shared environment.
        assert train_layer.state()["position"] != test_layer.state()["position"]
    finally:
        _close_data_layers(solver)


def test_two_training_processes_read_one_readonly_lmdb(tmp_path):
    mlp_training(tmp_path, source="shared_lmdb", max_iter=60, snapshot=0)
    db = tmp_path / "shared_lmdb"
    before = digest(db)
    modes = {p: p.stat().st_mode for p in [db, *db.iterdir()]}
    for path, mode in modes.items():
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        for name in ("a", "b"):
            text = (tmp_path / "solver.prototxt").read_text()
            (tmp_path / f"solver_{name}.prototxt").write_text(
                text.replace('"snap/mlp"', f'"snap_{name}/mlp"')
            )
        runs = [
            cli(
                "train",
                "--solver",
                f"solver_{n}.prototxt",
                "--no-progress",
                cwd=tmp_path,
            )
            for n in ("a", "b")
        ]
        outs = [run.communicate(timeout=120)[0] for run in runs]
        for run, out in zip(runs, outs):
            assert run.returncode == 0, out
        for name in ("a", "b"):
            assert (tmp_path / f"snap_{name}" / "mlp_iter_60.solverstate").exists()
        assert digest(db) == before
    finally:
        for path, mode in modes.items():
            path.chmod(mode)


def _images(folder, n=4):
    lines = []
    for i in range(n):
        image(str(folder / "images" / f"{i}.png"))
        lines.append(f"{i}.png {i % 2}")
    (folder / "list.txt").write_text("\n".join(lines) + "\n")


def test_convert_imageset_refuses_an_existing_db_while_it_is_read(
    tmp_path, monkeypatch
):
    import caffepy

    mlp_training(tmp_path, max_iter=5, snapshot=0)
    _images(tmp_path)
    before = digest(tmp_path / "train_lmdb")
    monkeypatch.chdir(tmp_path)
    net = caffepy.Net("net.prototxt", caffepy.TRAIN)
    try:
        net.forward()  # a reader is open on the database
        run = cli("convert_imageset", "images/", "list.txt", "train_lmdb", cwd=tmp_path)
        out = run.communicate(timeout=120)[0]
        assert run.returncode == 1, out
        assert "train_lmdb: DB exists, refusing to overwrite" in out
        assert "Traceback" not in out
        net.forward()
    finally:
        for layer in net.data_layers:
            layer.close()
    assert digest(tmp_path / "train_lmdb") == before
    assert not (tmp_path / "train_lmdb.partial").exists()


def test_a_second_writer_refuses_while_the_first_writes(tmp_path):
    from caffepy.data.datum import array_to_datum
    from caffepy.data.db import LMDBReader, LMDBWriter
    from caffepy.tools.convert_imageset import convert_imageset

    _images(tmp_path)
    path = tmp_path / "new_lmdb"
    record = array_to_datum(np.zeros((1, 2, 2), np.uint8)).SerializeToString()
    with LMDBWriter(path, commit_every=1) as first:
        first.put("00000000", record)
        # Another process converting into the same path refuses...
        run = cli("convert_imageset", "images/", "list.txt", "new_lmdb", cwd=tmp_path)
        out = run.communicate(timeout=120)[0]
        assert run.returncode == 1, out
        assert "another process is writing this database" in out
        # ... and so does a writer in this process; a reader says it is locked.
        with pytest.raises(DataError, match="another process is writing"):
            convert_imageset(
                str(tmp_path / "images") + "/", tmp_path / "list.txt", path
            )
        with pytest.raises(
            DataError, match="is locked: another process is still writing it"
        ):
            LMDBReader(path)
        first.put("00000001", record)
    with LMDBReader(path) as reader:  # the first writer's work is whole
        assert len(reader) == 2
    assert not os.path.exists(str(path) + ".partial")
    assert not os.path.exists(str(path) + ".partial.lock")


def test_a_killed_conversion_is_redone(tmp_path):
    from caffepy.data.db import LMDBReader
    from caffepy.tools.convert_imageset import convert_imageset

    _images(tmp_path)
    path = tmp_path / "out_lmdb"
    # What a kill -9 leaves: the .partial folder, an unlocked lock file.
    (tmp_path / "out_lmdb.partial").mkdir()
    (tmp_path / "out_lmdb.partial" / "data.mdb").write_bytes(b"torn")
    (tmp_path / "out_lmdb.partial.lock").write_bytes(b"")
    with pytest.raises(DataError, match="a conversion was killed"):
        LMDBReader(path)
    stats = convert_imageset(
        str(tmp_path / "images") + "/", tmp_path / "list.txt", path
    )
    assert stats["written"] == 4
    with LMDBReader(path) as reader:
        assert len(reader) == 4
