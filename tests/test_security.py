"""Files from other people never reach outside their folder nor make us read without bound; train.py listens on
no port unless multi-worker training is asked for. (Weight files: test_weights_file.py.)"""

import json
import os
import shutil
import subprocess
import time

import numpy as np
import pytest

import data_reader
from alexnet_tf import datasets, errors, prepared_shards, run_folder, sample_dataset
import train
from conftest import SCRIPT_ENV, script_command, two_step_run


@pytest.mark.parametrize("name", ["../outside", "/etc/passwd", "link-out"])
def test_a_shard_name_leading_outside_is_refused(prepared_data, tmp_path, name):
    data = tmp_path / "prepared"
    shutil.copytree(prepared_data, data)
    (tmp_path / "outside").write_bytes(b"")
    os.symlink(tmp_path / "outside", data / "link-out")
    manifest = json.loads((data / data_reader.PREPARED_MANIFEST).read_text())
    manifest["train"]["shards"][0] = name
    (data / data_reader.PREPARED_MANIFEST).write_text(json.dumps(manifest))
    synsets = data_reader.load_synsets(str(data / data_reader.META_MAT))
    with pytest.raises(errors.DataError, match=f"prepared.json names '{name}', which leads outside"):
        data_reader.read_split(str(data), synsets, "train")


def test_a_class_name_leading_outside_is_refused(tmp_path):
    sample_dataset.write_meta_mat(
        str(tmp_path / data_reader.META_MAT), [(1, "n01", "a", ()), (2, "../../etc", "b", ())]
    )
    synsets = data_reader.load_synsets(str(tmp_path / data_reader.META_MAT))
    (tmp_path / data_reader.TRAIN_DIR / "n01").mkdir(parents=True)
    sample_dataset.stripes(0, 2, np.random.default_rng(0)).save(tmp_path / data_reader.TRAIN_DIR / "n01" / "a.JPEG")
    with pytest.raises(errors.DataError, match="meta.mat names '../../etc', which leads outside"):
        data_reader.list_train(str(tmp_path), synsets)


def test_an_unreadable_list_leading_outside_is_refused(tiny_data):
    split = data_reader.read_split(
        tiny_data, data_reader.load_synsets(os.path.join(tiny_data, data_reader.META_MAT)), "train"
    )
    with pytest.raises(errors.CheckpointError, match="config.json names '../../elsewhere.JPEG', which leads outside"):
        train.readable(split, tiny_data, ["../../elsewhere.JPEG"], source="run")
    assert train.readable(split, tiny_data, [os.path.relpath(split.paths[0], tiny_data)], source="run").num_images == 39


def test_a_preparation_log_naming_other_files_is_refused(tiny_data, tmp_path):
    out = tmp_path / "prepared"
    synsets = data_reader.load_synsets(os.path.join(tiny_data, data_reader.META_MAT))
    plan = prepared_shards.preparation_plan(tiny_data, synsets, train_shards=2, val_shards=1)
    out.mkdir()
    assert prepared_shards.completed_shards(str(out), plan) == {}  # writes the plan
    (out / prepared_shards.LOG).write_text(json.dumps({"shard": "../../evil", "unreadable": []}) + "\n")
    with pytest.raises(errors.DataError, match="names a shard or image that .* does not plan"):
        prepared_shards.completed_shards(str(out), plan)
    (out / prepared_shards.LOG).write_text(json.dumps({"shard": plan["train"][0][0], "unreadable": ["/etc/x"]}) + "\n")
    with pytest.raises(errors.DataError, match="names a shard or image that .* does not plan"):
        prepared_shards.completed_shards(str(out), plan)


def test_files_far_larger_than_any_real_one_are_refused_unread(tiny_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    synsets = data_reader.load_synsets(str(data / data_reader.META_MAT))
    for name, limit in (
        (data_reader.GROUND_TRUTH, datasets.GROUND_TRUTH_MAX_BYTES),
        (data_reader.META_MAT, datasets.META_MAT_MAX_BYTES),
    ):
        os.truncate(data / name, limit + 1)  # a sparse file: no disk space used
    with pytest.raises(errors.DataError, match="more than the 67,108,864 any real one has"):
        data_reader.load_synsets(str(data / data_reader.META_MAT))
    with pytest.raises(errors.DataError, match="more than the 16,777,216 any real one has"):
        data_reader.read_ground_truth(str(data / data_reader.GROUND_TRUTH), 10)
    (data / data_reader.PREPARED_MANIFEST).write_bytes(b"")
    os.truncate(data / data_reader.PREPARED_MANIFEST, datasets.MANIFEST_MAX_BYTES + 1)
    with pytest.raises(errors.DataError, match="prepared.json has 268,435,457 bytes"):
        data_reader.read_split(str(data), synsets, "train")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / run_folder.CONFIG_NAME).write_bytes(b"")
    os.truncate(tmp_path / "run" / run_folder.CONFIG_NAME, run_folder.CONFIG_MAX_BYTES + 1)
    with pytest.raises(errors.CheckpointError, match="config.json has 268,435,457 bytes"):
        run_folder.load_config(str(tmp_path / "run"))


def listening_ports(pid):
    """The TCP ports process `pid` listens on now, from /proc."""
    sockets = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:  # be specific: closed since the listing
            continue
        if target.startswith("socket:["):
            sockets.add(target[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        with open(f"/proc/{pid}/net/{table}") as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in sockets:  # state LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def ports_listened_on_while_training(tiny_data, tmp_path, env):
    process = subprocess.Popen(
        script_command(
            "train.py",
            "-scratch",
            *two_step_run(tiny_data, tmp_path),
            "--overwrite",
        ),
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    ports = set()
    while process.poll() is None:
        try:
            ports |= listening_ports(process.pid)
        except (FileNotFoundError, ProcessLookupError):  # be specific: the process ended between two looks
            break
        time.sleep(0.05)
    assert process.wait(timeout=600) == 0, process.stderr.read()
    return ports


@pytest.mark.slow
def test_train_py_listens_only_for_multi_worker_training(tiny_data, tmp_path):
    assert ports_listened_on_while_training(tiny_data, tmp_path, SCRIPT_ENV) == set()
    port = 20000 + os.getpid() % 20000
    cluster = {"cluster": {"worker": [f"localhost:{port}"]}, "task": {"type": "worker", "index": 0}}
    assert port in ports_listened_on_while_training(
        tiny_data, tmp_path, {**SCRIPT_ENV, "TF_CONFIG": json.dumps(cluster)}
    )
