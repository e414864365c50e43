"""Training loop on tiny generated videos: loss goes down, stats/plots/checkpoints, multigrid phases, divergence."""
import json
import logging
import os

import pytest
import torch
import yaml

from mtnet_plugin.config import load_config
from mtnet_plugin.engine import Trainer, TrainingDiverged, train
from mtnet_plugin.engine.checkpoint import list_checkpoints, read_checkpoint
from mtnet_plugin.engine.hooks import HookBase
from mtnet_plugin.engine.logs import read_json_stats
from mtnet_plugin.engine.lr_policy import get_lr_at_epoch
from mtnet_plugin.engine.optim import param_groups
from mtnet_plugin.models import build_model


def write_class_videos(make_video, splits=("train", "val"), per_class=2, num_frames=4, width=32):
    """Two easy classes: a still square (0) and a fast-moving one (1); returns the data dir.

    With the defaults (4 frames of 32 x 32 and a 4-frame, 32 px clip) a training clip is the whole video, so the
    run can overfit the 4 training clips quickly."""
    data_dir = None
    for split in splits:
        lines = []
        for i in range(2 * per_class):
            label = i % 2
            path = make_video(f"videos/{split}_{i}.mp4", num_frames=num_frames, height=32, width=width, fps=10,
                              seed=i, speed=0 if label == 0 else 6)
            lines.append(f"{path} {label}")
            data_dir = os.path.dirname(os.path.dirname(path))
        with open(os.path.join(data_dir, f"{split}.csv"), "w") as f:
            f.write("\n".join(lines) + "\n")
    return data_dir


def tiny_cfg_dict(data_dir: str, output_dir: str, **sections) -> dict:
    """A tiny X3D run on CPU (2 classes, 4 frames, 32 px) as a YAML-able dict; ``sections`` update nodes."""
    cfg = {
        "TRAIN": {"ENABLE": True, "BATCH_SIZE": 4, "EVAL_PERIOD": 1, "CHECKPOINT_PERIOD": 1, "AUTO_RESUME": True},
        "TEST": {"ENABLE": False, "BATCH_SIZE": 6, "NUM_ENSEMBLE_VIEWS": 2, "NUM_SPATIAL_CROPS": 1},
        "DATA": {"PATH_TO_DATA_DIR": data_dir, "NUM_FRAMES": 4, "SAMPLING_RATE": 1, "TARGET_FPS": 10,
                 "TRAIN_JITTER_SCALES": [32, 32], "TRAIN_CROP_SIZE": 32, "TEST_CROP_SIZE": 32,
                 "INPUT_CHANNEL_NUM": [3], "RANDOM_FLIP": False},
        "MODEL": {"MODEL_NAME": "X3D", "ARCH": "x3d", "NUM_CLASSES": 2, "DROPOUT_RATE": 0.0},
        "X3D": {"WIDTH_FACTOR": 0.5, "DEPTH_FACTOR": 0.2, "DIM_C1": 4, "DIM_C5": 16, "BOTTLENECK_FACTOR": 1.0},
        "SOLVER": {"BASE_LR": 0.05, "LR_POLICY": "cosine", "MAX_EPOCH": 4, "WARMUP_EPOCHS": 1.0,
                   "WARMUP_START_LR": 0.01, "OPTIMIZING_METHOD": "sgd", "WEIGHT_DECAY": 0.0},
        "DATA_LOADER": {"NUM_WORKERS": 0, "PIN_MEMORY": False},
        "NUM_GPUS": 0,
        "LOG_PERIOD": 1,
        "RNG_SEED": 0,
        "OUTPUT_DIR": output_dir,
    }
    for node, values in sections.items():
        if isinstance(values, dict):
            cfg.setdefault(node, {}).update(values)
        else:
            cfg[node] = values
    return cfg


def write_tiny_yaml(path: str, data_dir: str, output_dir: str, **sections) -> str:
    with open(path, "w") as f:
        yaml.safe_dump(tiny_cfg_dict(data_dir, output_dir, **sections), f)
    return path


def tiny_cfg(tmp_path, data_dir, **sections):
    path = write_tiny_yaml(str(tmp_path / "tiny.yaml"), data_dir, str(tmp_path / "out"), **sections)
    cfg = load_config([path])
    cfg.freeze()
    return cfg


def test_tiny_training_lowers_the_loss_and_writes_stats(tmp_path, make_video):
    data_dir = write_class_videos(make_video)
    cfg = tiny_cfg(tmp_path, data_dir, SOLVER={"MAX_EPOCH": 12, "BASE_LR": 0.02,
                   "OPTIMIZING_METHOD": "adamw"}, TRAIN={"EVAL_PERIOD": 6,
                   "CHECKPOINT_PERIOD": 5}, DATA_LOADER={"NUM_WORKERS": 1})
    summary = train(cfg)
    out = cfg.OUTPUT_DIR
    stats = read_json_stats(os.path.join(out, "json_stats.log"))
    epochs = [s for s in stats if s["_type"] == "train_epoch"]
    vals = [s for s in stats if s["_type"] == "val_epoch"]
    assert [s["epoch"] for s in epochs] == [f"{e}/12" for e in range(1, 13)]
    assert [s["epoch"] for s in vals] == ["6/12", "12/12"]
    assert float(epochs[-1]["loss"]) < 0.5 * float(epochs[0]["loss"])
    expected_keys = {"_type", "epoch", "dt", "dt_data", "dt_net", "eta", "loss", "lr", "grad_norm", "gpu_mem", "RAM",
                     "top1_err", "top5_err", "data_failures", "data_failure_paths",
                     "nonfinite_grad_skips", "nonfinite_grad_iters"}
    assert set(epochs[0]) == expected_keys
    assert {"top1_err", "top5_err", "min_top1_err", "min_top5_err", "mean_class_acc"} <= set(vals[0])
    # the LR of the last iteration of epoch e (one iteration per epoch: fractional epoch e + 0)
    for e, s in enumerate(epochs):
        assert float(s["lr"]) == pytest.approx(get_lr_at_epoch(cfg, e), abs=1e-5)
    assert [os.path.basename(p) for p in list_checkpoints(out)] == [
        "checkpoint_epoch_00005.pyth", "checkpoint_epoch_00010.pyth", "checkpoint_epoch_00012.pyth"]
    assert summary["last_checkpoint"].endswith("checkpoint_epoch_00012.pyth")
    assert os.path.getsize(os.path.join(out, "training_curves.png")) > 1000
    assert yaml.safe_load(open(os.path.join(out, "config.yaml")))["SOLVER"]["MAX_EPOCH"] == 12
    # json lines are PySlowFast's: 5-decimal floats, sorted keys
    line = open(os.path.join(out, "json_stats.log")).readline()
    assert list(json.loads(line)) == sorted(json.loads(line))
    assert len(line.split('"loss": ')[1].split(",")[0].split(".")[1]) == 5


class Recorder(HookBase):
    """Records (epoch, phase, phase batch, phase frames, phase crop, lr, input shape) of every step."""

    def __init__(self, model):
        self.seen, self.shapes = [], []
        model.register_forward_pre_hook(lambda module, args: self.shapes.append(tuple(args[0].shape)))

    def before_step(self, trainer):
        self.seen.append((trainer.epoch, trainer.phase_index, trainer.phase_cfg.TRAIN.BATCH_SIZE,
                          trainer.phase_cfg.DATA.NUM_FRAMES, trainer.phase_cfg.DATA.TRAIN_CROP_SIZE, trainer.lr))


@pytest.mark.parametrize("arch", ["x3d", "mtnet"])
def test_cosine_multigrid_long_cycle_runs_a_tiny_model_through_every_phase(tmp_path, make_video, arch):
    data_dir = write_class_videos(make_video, splits=("train",), per_class=4, num_frames=12)
    cfg = tiny_cfg(tmp_path, data_dir, TRAIN={"BATCH_SIZE": 1, "EVAL_PERIOD": 100}, MODEL={"ARCH": arch},
                   DATA={"NUM_FRAMES": 8, "TRAIN_CROP_SIZE": 32},
                   MULTIGRID={"LONG_CYCLE": True, "EPOCH_FACTOR": 1.0},
                   SOLVER={"MAX_EPOCH": 4, "WARMUP_EPOCHS": 0.0})
    trainer = Trainer(cfg)
    recorder = Recorder(trainer.model)
    trainer.hooks.insert(1, recorder)
    trainer.train()
    assert type(trainer.model).__name__ == {"x3d": "X3D", "mtnet": "MTNet"}[arch]
    schedule = trainer.multigrid.schedule
    assert trainer.max_epoch == schedule[-1][-1]
    assert sorted({s[1] for s in recorder.seen}) == list(range(len(schedule)))  # every phase trained
    for (epoch, phase, batch, frames, crop, lr), shape in zip(recorder.seen, recorder.shapes):
        b_rel, t, s = schedule[phase][1]
        assert (batch, frames, crop) == (b_rel, t, s) and shape == (b_rel, 3, t, s, s)
        expected = b_rel * get_lr_at_epoch(cfg, epoch * 4 / trainer.max_epoch)  # the cosine definition
        assert lr == pytest.approx(expected, abs=b_rel * 0.05 / 4)  # within one iteration's LR change
    ckpts = [read_checkpoint(p) for p in list_checkpoints(cfg.OUTPUT_DIR)]
    assert ckpts[-1]["epoch"] == trainer.max_epoch - 1 and ckpts[-1]["multigrid_phase"] == len(schedule) - 1


def test_short_cycle_alternates_crops_and_batch_sizes(tmp_path, make_video):
    data_dir = write_class_videos(make_video, splits=("train",), per_class=4, num_frames=4)
    cfg = tiny_cfg(tmp_path, data_dir, TRAIN={"BATCH_SIZE": 1, "EVAL_PERIOD": 100},
                   MULTIGRID={"SHORT_CYCLE": True, "EPOCH_FACTOR": 1.0}, SOLVER={"MAX_EPOCH": 1})
    trainer = Trainer(cfg)
    recorder = Recorder(trainer.model)
    trainer.hooks.insert(1, recorder)
    trainer.train()
    # factors 0.5 and 0.707 of a 32 px crop: 16 px x 4 clips, 23 px x 2 clips, then the full 32 px x 1 clip
    assert recorder.shapes[:3] == [(4, 3, 4, 16, 16), (2, 3, 4, 23, 23), (1, 3, 4, 32, 32)]


class Poison(HookBase):
    """Makes the model's output NaN (or huge) from a given epoch on."""

    def __init__(self, epoch, value):
        self.epoch, self.value = epoch, value

    def before_step(self, trainer):
        if trainer.epoch == self.epoch:
            with torch.no_grad():
                weight = trainer.model.head.projection.weight  # (num_classes, dim): opposite rows
                weight[0].fill_(self.value)
                weight[1:].fill_(-self.value)


@pytest.mark.parametrize("value, factor, message", [(float("nan"), 0.0, "Loss is nan"),
                                                    (1e4, 5.0, "KILL_LOSS_EXPLOSION_FACTOR")])
def test_divergence_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(
        tmp_path, make_video, value, factor, message):
    data_dir = write_class_videos(make_video, splits=("train",))
    cfg = tiny_cfg(tmp_path, data_dir, TRAIN={"BATCH_SIZE": 2, "EVAL_PERIOD": 100, "KILL_LOSS_EXPLOSION_FACTOR": factor},
                   SOLVER={"MAX_EPOCH": 5})
    trainer = Trainer(cfg)
    trainer.hooks.insert(1, Poison(2, value))
    with pytest.raises(TrainingDiverged, match=message) as err:
        trainer.train()
    assert "epoch 3" in str(err.value) and "checkpoint_epoch_00002.pyth" in str(err.value)
    assert [os.path.basename(p) for p in list_checkpoints(cfg.OUTPUT_DIR)] == [
        "checkpoint_epoch_00001.pyth", "checkpoint_epoch_00002.pyth"]
    assert torch.isfinite(read_checkpoint(list_checkpoints(cfg.OUTPUT_DIR)[-1])["model_state"]["head.projection.weight"]).all()


def test_finetune_from_checkpoint_file_loads_matching_weights(tmp_path, make_video, caplog):
    data_dir = write_class_videos(make_video, splits=("train",))
    src = tiny_cfg(tmp_path, data_dir)
    src.defrost()
    src.MODEL.NUM_CLASSES = 3
    model = build_model(src)
    path = str(tmp_path / "pretrained.pyth")
    torch.save({"epoch": 9, "model_state": model.state_dict(), "cfg": src.dump()}, path)
    cfg = tiny_cfg(tmp_path, data_dir, TRAIN={"CHECKPOINT_FILE_PATH": path, "CHECKPOINT_EPOCH_RESET": True})
    with caplog.at_level(logging.WARNING):
        trainer = Trainer(cfg)
    assert trainer.start_epoch == 0
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "head.projection.weight" in text and "head.projection.bias" in text
    own = trainer.model.state_dict()
    for key, value in model.state_dict().items():
        if not key.startswith("head.projection"):
            torch.testing.assert_close(own[key], value)
    cfg2 = tiny_cfg(tmp_path, data_dir, TRAIN={"CHECKPOINT_FILE_PATH": path})
    assert Trainer(cfg2).start_epoch == 10  # PySlowFast: the file's epoch + 1 without EPOCH_RESET


def test_real_x3d_bn_params_are_all_in_the_bn_group(tmp_path):
    cfg = load_config([write_tiny_yaml(str(tmp_path / "t.yaml"), str(tmp_path), str(tmp_path))])
    model = build_model(cfg)
    groups = {g["name"]: g for g in param_groups(model, cfg)}
    bn = {id(p) for m in model.modules() if isinstance(m, torch.nn.BatchNorm3d) for p in m.parameters()}
    assert {id(p) for p in groups["bn"]["params"]} == bn and len(bn) > 0
    assert not bn & {id(p) for p in groups["non_bn"]["params"]}


def test_precise_bn_sets_running_mean_to_the_population_mean(tmp_path, make_video):
    data_dir = write_class_videos(make_video, splits=("train",))
    cfg = tiny_cfg(tmp_path, data_dir, BN={"USE_PRECISE_STATS": True, "NUM_BATCHES_PRECISE": 10},
                   TRAIN={"BATCH_SIZE": 2, "EVAL_PERIOD": 100}, SOLVER={"MAX_EPOCH": 2})
    train(cfg)
    state = read_checkpoint(list_checkpoints(cfg.OUTPUT_DIR)[-1])["model_state"]
    model = build_model(cfg)
    model.load_state_dict(state)
    model.eval()
    name, first_bn = next((n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm3d))
    seen = []
    first_bn.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    from mtnet_plugin.data import build_dataset  # the train pipeline is deterministic here (clip = whole video)

    dataset = build_dataset(cfg, "train")
    with torch.no_grad():
        for i in range(len(dataset)):
            model(dataset[i]["inputs"][None])
    population_mean = torch.cat(seen).mean(dim=(0, 2, 3, 4))  # over every clip, frame and pixel
    torch.testing.assert_close(state[f"{name}.running_mean"], population_mean, rtol=1e-4, atol=1e-5)


def test_data_failures_are_counted_and_named_in_the_epoch_stats(tmp_path, make_video):
    data_dir = write_class_videos(make_video, splits=("train",))
    corrupt = os.path.join(data_dir, "videos", "broken.mp4")
    with open(corrupt, "wb") as f:
        f.write(b"not a video" * 50)
    with open(os.path.join(data_dir, "train.csv"), "a") as f:
        f.write(f"{corrupt} 1\n")
    cfg = tiny_cfg(tmp_path, data_dir, TRAIN={"BATCH_SIZE": 5, "EVAL_PERIOD": 100}, SOLVER={"MAX_EPOCH": 1})
    train(cfg)
    (stats,) = [s for s in read_json_stats(os.path.join(cfg.OUTPUT_DIR, "json_stats.log"))
                if s["_type"] == "train_epoch"]
    assert stats["data_failures"] >= 1 and stats["data_failure_paths"] == [corrupt]


class GradProbe(HookBase):
    """After each step: the global L2 norm and the largest |value| of the gradients the optimizer used."""

    def __init__(self):
        self.norms, self.maxima = [], []

    def after_step(self, trainer):
        grads = [p.grad for p in trainer.model.parameters() if p.grad is not None]
        self.norms.append(float(torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads]))))
        self.maxima.append(max(float(g.abs().max()) for g in grads))


@pytest.mark.parametrize("key, limit", [("CLIP_GRAD_L2NORM", 1e-3), ("CLIP_GRAD_VAL", 1e-4)])
def test_gradient_clipping(tmp_path, make_video, key, limit):
    data_dir = write_class_videos(make_video, splits=("train",))
    cfg = tiny_cfg(tmp_path, data_dir, TRAIN={"EVAL_PERIOD": 100}, SOLVER={"MAX_EPOCH": 1, key: limit})
    trainer = Trainer(cfg)
    probe = GradProbe()
    trainer.hooks.append(probe)
    trainer.train()
    measured = probe.norms if key == "CLIP_GRAD_L2NORM" else probe.maxima
    assert measured and max(measured) <= limit * (1 + 1e-4)
    assert trainer.meter.grad_norm > limit  # the logged norm is the one before clipping


@pytest.mark.parametrize("zero_init", ["final_bn", "sr"])
def test_parameters_without_gradient_are_named_in_a_warning_at_the_start(tmp_path, make_video, caplog, zero_init):
    """Zeroed final BNs followed by ReLU (what validation rejects) leave every MTBlock parameter without a
    gradient: the first iterations' warning names them. The default zero-init target warns about nothing."""
    data_dir = write_class_videos(make_video, splits=("train",))
    cfg = tiny_cfg(tmp_path, data_dir, MODEL={"MODEL_NAME": "MTNet", "ARCH": "mtnet", "NUM_CLASSES": 2},
                   MTNET={"ZERO_INIT": zero_init, "LAST_MTCONV_ACT": True}, RESNET={"ZERO_INIT_FINAL_BN": True},
                   TRAIN={"BATCH_SIZE": 2, "EVAL_PERIOD": 100, "CHECKPOINT_PERIOD": 100}, SOLVER={"MAX_EPOCH": 2})
    with caplog.at_level(logging.INFO, logger="mtnet_plugin.engine.hooks"):
        train(cfg)
    warnings = [r.getMessage() for r in caplog.records if "got no (finite, nonzero) gradient" in r.getMessage()]
    all_learn = [r for r in caplog.records if r.getMessage().startswith("Every trainable parameter tensor got")]
    if zero_init == "sr":
        assert warnings == [] and len(all_learn) == 1
        return
    assert all_learn == []
    (msg,) = warnings
    model = build_model(cfg)
    block = [n for n, _ in model.named_parameters() if ".branch2." in n]
    assert msg.startswith(f"{len(block)} of the model's trainable parameter tensors")
    assert "s2.pathway0_res0.branch2.conv_a.conv_local.weight" in msg and "stem" not in msg


def test_a_grad_scaler_skips_inf_steps_itself_and_they_are_not_counted(tmp_path, make_video):
    # fp16 mixed precision (CUDA) scales the loss and its GradScaler skips any step whose gradients overflowed, then
    # lowers the scale: that is calibration, not divergence. A CPU GradScaler stands in for the CUDA one here.
    data_dir = write_class_videos(make_video, splits=("train",))
    cfg = tiny_cfg(tmp_path, data_dir, SOLVER={"MAX_EPOCH": 1}, TRAIN={"BATCH_SIZE": 2, "EVAL_PERIOD": 100})
    assert cfg.TRAIN.NONFINITE_GRAD == "stop"
    trainer = Trainer(cfg)
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10)
    first = next(p for p in trainer.model.parameters() if p.requires_grad)
    first.register_hook(lambda g: g * float("inf") if trainer.iter == 0 else g)
    stepped = []
    step = trainer.optimizer.step
    trainer.optimizer.step = lambda *a, **k: stepped.append(trainer.iter) or step(*a, **k)
    trainer.train()  # no TrainingDiverged: the scaler handled the inf
    assert stepped == [1]  # the overflowed step was skipped by the scaler, once
    assert trainer.scaler.get_scale() == 2.0 ** 9  # and it halved its scale
    (epoch,) = [s for s in read_json_stats(os.path.join(cfg.OUTPUT_DIR, "json_stats.log")) if s["_type"] == "train_epoch"]
    assert epoch["nonfinite_grad_skips"] == 0 and epoch["nonfinite_grad_iters"] == []
