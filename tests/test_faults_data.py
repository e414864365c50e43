"""Fault injection, data side: bad files in the train / val / test lists, malformed lists, a dying loader worker.

Runs the real runtime (``engine.train`` / ``engine.run_test``, or ``tools/run_net.py`` in a subprocess when the fault
kills a process) on tiny generated videos. Each test is a row of docs/reliability.md.
"""
import json
import logging
import os
import subprocess
import sys

import pytest

import fault_files
from mtnet_plugin.config import load_config
from mtnet_plugin.data import VideoListError
from mtnet_plugin.engine import run_test
from mtnet_plugin.engine import run, train
from mtnet_plugin.engine.checkpoint import list_checkpoints
from mtnet_plugin.engine.logs import read_json_stats

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def dirty(tmp_path_factory):
    """7 good clips + one file of every broken and odd kind (16 lines), the same list for train, val and test."""
    folder = str(tmp_path_factory.mktemp("dirty"))
    good = [fault_files.good_video(os.path.join(folder, "videos", f"good_{i}.mp4"), seed=i) for i in range(7)]
    bad = fault_files.plant(os.path.join(folder, "videos"))
    entries = [(p, i % 2) for i, p in enumerate(good + [bad[k] for k in fault_files.BROKEN + fault_files.ODD])]
    for split in ("train", "val", "test"):
        fault_files.write_list(os.path.join(folder, f"{split}.csv"), entries)
    return folder, bad


def _cfg(tmp_path, data_dir, **sections):
    path = fault_files.write_yaml(str(tmp_path / "cfg.yaml"),
                                  fault_files.tiny_cfg_dict(data_dir, str(tmp_path / "out"), **sections))
    cfg = load_config([path])
    cfg.freeze()
    return cfg


def test_bad_files_in_train_val_test_lists_are_skipped_and_named(dirty, tmp_path, caplog):
    folder, bad = dirty
    broken = sorted(bad[k] for k in fault_files.BROKEN)
    # 16 lines / batch 4: every train index is drawn once, through a loader worker
    cfg = _cfg(tmp_path, folder, SOLVER={"MAX_EPOCH": 1}, TEST={"ENABLE": True},
               DATA_LOADER={"NUM_WORKERS": 1})
    with caplog.at_level(logging.WARNING):
        summary = train(cfg)
        results = run_test(cfg)
    stats = read_json_stats(os.path.join(cfg.OUTPUT_DIR, "json_stats.log"))
    (train_stats,) = [s for s in stats if s["_type"] == "train_epoch"]
    (val_stats,) = [s for s in stats if s["_type"] == "val_epoch"]
    # train: every broken file failed, was replaced and is named; the odd but usable files are not
    assert train_stats["data_failure_paths"] == broken
    assert train_stats["data_failures"] >= len(broken)
    assert summary["last_checkpoint"] and os.path.exists(summary["last_checkpoint"])
    # val: each broken file is one failed sample
    assert val_stats["data_failure_paths"] == broken and val_stats["data_failures"] == len(broken)
    # test: failed videos listed with their reason, the 11 others scored
    on_disk = json.load(open(os.path.join(cfg.OUTPUT_DIR, "test_results.json")))
    assert sorted(on_disk["failed_videos"]) == broken == sorted(results["failed_videos"])
    assert on_disk["num_videos"] == 11 and on_disk["num_videos_listed"] == 16
    reasons = {f["path"]: " ".join(f["errors"]) for f in on_disk["failures"]}
    assert "file not found" in reasons[bad["missing"]] and "0 bytes" in reasons[bad["empty"]]
    assert "no video stream" in reasons[bad["audio_only"]]
    scored = {v["path"] for v in on_disk["per_video"]}
    assert {bad[k] for k in fault_files.ODD} <= scored
    # what the user sees: a warning naming every broken file
    warned = " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    for path in broken:
        assert path in warned


def test_only_broken_train_files_stop_with_their_names(dirty, tmp_path):
    folder, bad = dirty
    data = tmp_path / "data"
    data.mkdir()
    fault_files.write_list(str(data / "train.csv"), [(bad[k], 0) for k in fault_files.BROKEN])
    # in a loader worker: the error crosses the process boundary with its message
    cfg = _cfg(tmp_path, str(data), DATA={"MAX_REPLACEMENTS": 3}, TRAIN={"BATCH_SIZE": 1},
               DATA_LOADER={"NUM_WORKERS": 1})
    with pytest.raises(RuntimeError, match="DATA.MAX_REPLACEMENTS") as err:
        train(cfg)
    # 4 attempts (the replacements are drawn at random, possibly the same file again), each one named
    assert "4 videos in a row" in str(err.value)
    assert any(bad[k] in str(err.value) for k in fault_files.BROKEN)
    assert list_checkpoints(cfg.OUTPUT_DIR) == []


def test_list_saved_with_byte_order_mark_and_crlf_loads_every_video(dirty, tmp_path):
    """Lists exported by Excel start with a UTF-8 BOM and end lines with CRLF."""
    folder, _ = dirty
    good = [os.path.join(folder, "videos", f"good_{i}.mp4") for i in range(4)]
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.csv").write_bytes(("\ufeff" + "".join(f"{p} {i % 2}\r\n" for i, p in enumerate(good)))
                                     .encode("utf-8"))
    cfg = _cfg(tmp_path, str(data), SOLVER={"MAX_EPOCH": 1}, TRAIN={"EVAL_PERIOD": 100})
    train(cfg)
    (stats,) = [s for s in read_json_stats(os.path.join(cfg.OUTPUT_DIR, "json_stats.log"))
                if s["_type"] == "train_epoch"]
    fault_files.expect_handled(stats["data_failures"] == 0, f"videos failed: {stats['data_failure_paths']}")


MALFORMED = {
    "no_label": "{video}",
    "non_integer_label": "{video} walking",
    "negative_label": "{video} -1",
    "label_out_of_range": "{video} 2",
    "unterminated_quote": '"{video} 1',
    "bad_segment": "{video}#t=5,2 1",
}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_malformed_train_list_line_names_file_and_line(dirty, tmp_path, kind):
    folder, _ = dirty
    video = os.path.join(folder, "videos", "good_0.mp4")
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.csv").write_text(f"{video} 0\n{video} 1\n" + MALFORMED[kind].format(video=video) + "\n")
    cfg = _cfg(tmp_path, str(data))
    with pytest.raises(VideoListError) as err:
        train(cfg)
    assert str(err.value).startswith(f"{data / 'train.csv'}:3:")
    assert not os.path.exists(os.path.join(cfg.OUTPUT_DIR, "json_stats.log"))  # before any training step


@pytest.mark.parametrize("split", ["val", "test"])
def test_malformed_val_or_test_list_fails_before_training(dirty, tmp_path, split, root_handlers):
    """A typo in val.csv / test.csv must not cost the training run it follows."""
    folder, _ = dirty
    video = os.path.join(folder, "videos", "good_0.mp4")
    data = tmp_path / "data"
    data.mkdir()
    for name in ("train", "val", "test"):
        (data / f"{name}.csv").write_text(f"{video} 0\n{video} 1\n")
    (data / f"{split}.csv").write_text(f"{video} 0\n{video}\n")
    cfg = _cfg(tmp_path, str(data), TRAIN={"BATCH_SIZE": 2}, TEST={"ENABLE": True})
    with pytest.raises(VideoListError, match=f"{split}.csv:2:"):
        run(cfg)  # what tools/run_net.py calls: train, then test
    fault_files.expect_handled(not os.path.exists(os.path.join(cfg.OUTPUT_DIR, "json_stats.log")),
                               f"a training epoch ran before the malformed {split}.csv was read")


DRIVER = """
import os, sys, time
sys.argv = ["run_net.py", "--cfg", {cfg!r}]
import mtnet_plugin.data.kinetics as kinetics

_Reader = kinetics.VideoReader


class DyingReader(_Reader):
    # A decoder that takes its whole process down (as a segfault in FFmpeg would) on one file. The pause lets the
    # worker's queue thread finish sending the batch before (a death in mid-send: tests/test_engine_workers.py).
    def __init__(self, path, **kw):
        if path.endswith("poison.mp4"):
            time.sleep({pause})
            os._exit(3)
        super().__init__(path, **kw)


kinetics.VideoReader = DyingReader
sys.path.insert(0, {tools!r})
import run_net
run_net.main()
"""


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_loader_worker_death_names_the_sample(dirty, tmp_path, split):
    folder, _ = dirty
    data = tmp_path / "data"
    data.mkdir()
    good = [(os.path.join(folder, "videos", f"good_{i}.mp4"), i % 2) for i in range(4)]
    poison = fault_files.good_video(str(data / "poison.mp4"), seed=1)
    for name in ("train", "val", "test"):  # the poison only in the split under test
        fault_files.write_list(str(data / f"{name}.csv"), good[:2] + [(poison, 1)] + good[2:] if name == split
                               else good)
    cfg = fault_files.write_yaml(str(tmp_path / "cfg.yaml"), fault_files.tiny_cfg_dict(
        str(data), str(tmp_path / "out"), DATA_LOADER={"NUM_WORKERS": 1}, SOLVER={"MAX_EPOCH": 1},
        TRAIN={"BATCH_SIZE": 2, "ENABLE": split != "test"}, TEST={"ENABLE": split == "test"}))
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER.format(cfg=cfg, tools=os.path.join(ROOT, "tools"), pause=1.0))
    proc = subprocess.run([sys.executable, str(driver)], capture_output=True, text=True, timeout=180,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    seen = proc.stdout + proc.stderr
    assert proc.returncode != 0, seen[-2000:]
    assert "exited unexpectedly" in seen, seen[-2000:]
    fault_files.expect_handled("poison.mp4" in seen.split("exited unexpectedly", 1)[1],
                               "the error does not name the sample whose loading killed the worker:\n" + seen[-3000:])


def test_exit_does_not_wait_for_workers_of_a_loader_kept_alive_by_an_error(dirty, tmp_path):
    """Loader workers ignore the preemption signals (SIGTERM); at exit, multiprocessing ends daemonic children
    with SIGTERM and joins them. A loader whose iterator an error's traceback keeps alive (the error held by the
    caller, as pytest holds it) used to make the process's exit wait for its worker forever."""
    folder, bad = dirty
    data = tmp_path / "data"
    data.mkdir()
    fault_files.write_list(str(data / "train.csv"), [(bad[k], 0) for k in fault_files.BROKEN])
    path = fault_files.write_yaml(str(tmp_path / "cfg.yaml"), fault_files.tiny_cfg_dict(
        str(data), str(tmp_path / "out"), DATA={"MAX_REPLACEMENTS": 3}, TRAIN={"BATCH_SIZE": 1},
        DATA_LOADER={"NUM_WORKERS": 1}))
    script = (
        "import sys\n"
        "from mtnet_plugin.config import load_config\n"
        "from mtnet_plugin.engine import train\n"
        f"cfg = load_config([{path!r}]); cfg.freeze()\n"
        "try:\n"
        "    train(cfg)\n"
        "except RuntimeError:\n"
        "    held = sys.exc_info()  # keeps the loader's iterator, and so its worker, alive until exit\n"
        "    print('raised', flush=True)\n"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180, env=env,
                          cwd=str(tmp_path))
    assert "raised" in proc.stdout, proc.stderr[-2000:]
    assert proc.returncode == 0, proc.stderr[-2000:]
