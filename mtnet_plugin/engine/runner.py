"""``run(cfg)``: what ``tools/run_net.py`` does with one config — train and/or test, then say where outputs are."""
import logging
import os
from typing import Optional

from mtnet_plugin import data as mt_data
from mtnet_plugin.config import assert_and_infer_cfg, load_config
from mtnet_plugin.data.synthetic import ensure_synthetic_dataset, has_lists
from mtnet_plugin.models import MODEL_REGISTRY, registered_names
from mtnet_plugin.models.build import model_name_from_config

from .checkpoint import checkpoint_dir
from .distributed import is_main_process, launch, launch_rank
from .evaluate import RESULTS_FILE, check_test_checkpoint, run_test
from .logs import CONFIG_FILE, JSON_STATS_FILE, save_config, setup_logging
from .plots import CONFUSION_FILE, CURVES_FILE
from .trainer import train

logger = logging.getLogger(__name__)


def _train_then_test(cfg) -> dict:
    """Run in every process: ``train`` when TRAIN.ENABLE, then ``run_test`` when TEST.ENABLE."""
    out = {}
    if cfg.TRAIN.ENABLE and cfg.TEST.ENABLE:  # what run_test() needs fails now, not after the training it follows
        check_test_checkpoint(cfg)
        mt_data.build_dataset(cfg, "test")
    if cfg.TRAIN.ENABLE:
        out["train"] = train(cfg)
    if cfg.TEST.ENABLE:
        out["test"] = run_test(cfg)
    return out


def prepare_synthetic_data(cfg) -> Optional[str]:
    """The explicit data step of a ``SYNTHETIC.ENABLE`` config, run by ``tools/run_net.py`` before :func:`run`.

    Generates the dataset into ``DATA.PATH_TO_DATA_DIR`` when its lists are missing (``data.synthetic``), in this
    one process, before any other starts. A distributed run (torchrun, or ``NUM_SHARDS`` > 1) never generates:
    there a missing dataset is an error that names ``tools/make_synthetic.py --cfg``, which generates it alone.

    Returns:
        The data folder, or None when ``SYNTHETIC.ENABLE`` is off.

    Raises:
        FileNotFoundError: the lists are missing in a distributed run.
    """
    if "SYNTHETIC" not in cfg or not cfg.SYNTHETIC.ENABLE:
        return None
    data_dir = cfg.DATA.PATH_TO_DATA_DIR
    if not has_lists(data_dir) and (int(os.environ.get("WORLD_SIZE", "1")) > 1 or cfg.NUM_SHARDS > 1):
        raise FileNotFoundError(
            f"DATA.PATH_TO_DATA_DIR={data_dir} has no train.csv/val.csv/test.csv and a distributed run never "
            "generates data: run `python tools/make_synthetic.py --cfg <this config> [--opts ...]` once first")
    setup_logging(cfg.OUTPUT_DIR, launch_rank(cfg))
    return ensure_synthetic_dataset(cfg)


def output_locations(output_dir: str) -> "dict[str, str]":
    """The run's output files that exist."""
    paths = {
        "config": os.path.join(output_dir, CONFIG_FILE),
        "log": os.path.join(output_dir, "stdout.log"),
        "json_stats": os.path.join(output_dir, JSON_STATS_FILE),
        "curves": os.path.join(output_dir, CURVES_FILE),
        "checkpoints": checkpoint_dir(output_dir),
        "test_results": os.path.join(output_dir, RESULTS_FILE),
        "confusion_matrix": os.path.join(output_dir, CONFUSION_FILE),
    }
    return {k: v for k, v in paths.items() if os.path.exists(v)}


def run(cfg, init_method: Optional[str] = None) -> dict:
    """Set up logging in OUTPUT_DIR, then train/test ``cfg`` through :func:`launch`; log where the outputs are.

    Args:
        cfg: a validated, frozen config.
        init_method: PySlowFast's ``--init_method`` (multi-machine runs without torchrun).

    Returns:
        ``{"train": summary, "test": results, "outputs": {name: path}}`` in this process (empty when spawned).
    """
    rank = launch_rank(cfg)
    setup_logging(cfg.OUTPUT_DIR, rank)
    if rank == 0 and not cfg.TRAIN.ENABLE:  # train() writes it when training
        logger.info("Config saved to %s", save_config(cfg, cfg.OUTPUT_DIR))
    result = launch(cfg, _train_then_test, init_method) or {}
    if is_main_process():
        result["outputs"] = output_locations(cfg.OUTPUT_DIR)
        test_res = result.get("test")
        if test_res:
            logger.info("Test: top-1 %.2f%%, top-%d %.2f%%, mean class acc %.2f%% over %d videos (%d failed)",
                        test_res["top1"], test_res["top5_k"], test_res["top5"], test_res["mean_class_acc"],
                        test_res["num_videos"], len(test_res["failed_videos"]))
        for name, path in result["outputs"].items():
            logger.info("Output %-16s %s", name + ":", path)
    return result


def build_run_cfg(cfg_file: str, opts=(), num_shards: int = 1, shard_id: int = 0):
    """PySlowFast's ``load_config`` + ``assert_and_infer_cfg`` for one file: the frozen, validated run cfg.

    Args:
        cfg_file: a YAML config (``_BASE_`` allowed).
        opts: ``KEY VALUE ...`` overrides (``--opts``).
        num_shards, shard_id: ``--num_shards`` / ``--shard_id``.
    """
    cfg = load_config([cfg_file], list(opts or []))
    cfg.NUM_SHARDS, cfg.SHARD_ID = num_shards, shard_id
    return assert_and_infer_cfg(
        cfg, model_name=model_name_from_config(cfg), registered_models=registered_names(MODEL_REGISTRY)
    )
