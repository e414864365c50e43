"""Config nodes PySlowFast declares for tasks this runtime does not run.

They exist so that any PySlowFast YAML loads unchanged. Each entry is ``(key, default, meaning)``; the meaning
restates what the key controls in PySlowFast. Setting one of these to a non-default value is reported by
``mtnet_plugin.config.loading.warn_unimplemented`` (the keys are listed in ``UNIMPLEMENTED``).
"""
import math
from typing import Any, List, Tuple

from fvcore.common.config import CfgNode

_Entry = Tuple[str, Any, str]

_CONTRASTIVE: List[_Entry] = [
    ("T", 0.07, "temperature of contrastive losses"),
    ("DIM", 128, "embedding size the loss works on"),
    ("LENGTH", 239975, "training-set size (memory bank for kNN)"),
    ("QUEUE_LEN", 65536, "MoCo / memory-bank queue length"),
    ("MOMENTUM", 0.5, "momentum-encoder update rate"),
    ("MOMENTUM_ANNEALING", False, "cosine-anneal that momentum"),
    ("TYPE", "mem", "method: mem | moco | simclr | byol | swav"),
    ("INTERP_MEMORY", False, "interpolate the memory bank over time"),
    ("MEM_TYPE", "1d", "memory layout: 1d | 2d (with time)"),
    ("NUM_CLASSES_DOWNSTREAM", 400, "classes of the online kNN evaluation"),
    ("NUM_MLP_LAYERS", 1, "depth of the projection MLP"),
    ("MLP_DIM", 2048, "width of the projection / predictor MLPs"),
    ("BN_MLP", False, "BN inside those MLPs"),
    ("BN_SYNC_MLP", False, "synchronised BN inside those MLPs"),
    ("LOCAL_SHUFFLE_BN", True, "shuffle BN within a machine only"),
    ("MOCO_MULTI_VIEW_QUEUE", False, "enqueue every clip of a video, not only the first"),
    ("DELTA_CLIPS_MIN", -math.inf, "least frame distance between clips of one video"),
    ("DELTA_CLIPS_MAX", math.inf, "largest frame distance between clips of one video"),
    ("PREDICTOR_DEPTHS", [], "depths of predictor heads (empty = none)"),
    ("SEQUENTIAL", False, "process the clips of a video one after another"),
    ("SIMCLR_DIST_ON", True, "SimCLR loss across machines"),
    ("SWAV_QEUE_LEN", 0, "SwAV queue length (PySlowFast's spelling)"),
    ("KNN_ON", True, "online kNN evaluation while training"),
]

_AUG: List[_Entry] = [
    ("ENABLE", False, "RandAugment / random erasing pipeline"),
    ("NUM_SAMPLE", 1, "augmented copies of each clip per sample"),
    ("COLOR_JITTER", 0.4, "colour jitter strength"),
    ("AA_TYPE", "rand-m9-mstd0.5-inc1", "auto-augment policy string"),
    ("INTERPOLATION", "bicubic", "resampling of the augmentation"),
    ("RE_PROB", 0.25, "random-erasing probability"),
    ("RE_MODE", "pixel", "random-erasing fill"),
    ("RE_COUNT", 1, "erased regions per clip"),
    ("RE_SPLIT", False, "no erasing on the first split"),
    ("GEN_MASK_LOADER", False, "loader produces MAE masks"),
    ("MASK_TUBE", False, "tube masking"),
    ("MASK_FRAMES", False, "frame masking"),
    ("MASK_WINDOW_SIZE", [8, 7, 7], "mask grid (T, H, W)"),
    ("MASK_RATIO", 0.0, "masked share"),
    ("MAX_MASK_PATCHES_PER_BLOCK", None, "cap on patches per mask block"),
]

_MIXUP: List[_Entry] = [
    ("ENABLE", False, "mixup / cutmix"),
    ("ALPHA", 0.8, "mixup beta-distribution parameter"),
    ("CUTMIX_ALPHA", 1.0, "cutmix beta-distribution parameter"),
    ("PROB", 1.0, "probability of mixing a batch"),
    ("SWITCH_PROB", 0.5, "probability of cutmix instead of mixup"),
    ("LABEL_SMOOTH_VALUE", 0.1, "label smoothing of mixed targets"),
]

_MVIT: List[_Entry] = [
    ("MODE", "conv", "attention pooling: conv | max | avg"),
    ("POOL_FIRST", False, "pool before projecting q, k, v"),
    ("CLS_EMBED_ON", True, "class token"),
    ("PATCH_KERNEL", [3, 7, 7], "patch-embedding kernel"),
    ("PATCH_STRIDE", [2, 4, 4], "patch-embedding stride"),
    ("PATCH_PADDING", [2, 4, 4], "patch-embedding padding"),
    ("PATCH_2D", False, "2D patch embedding"),
    ("EMBED_DIM", 96, "base embedding width"),
    ("NUM_HEADS", 1, "base number of heads"),
    ("MLP_RATIO", 4.0, "MLP width ratio"),
    ("QKV_BIAS", True, "bias in the q, k, v projections"),
    ("DROPPATH_RATE", 0.1, "stochastic depth"),
    ("LAYER_SCALE_INIT_VALUE", 0.0, "layer-scale init (0 = off)"),
    ("DEPTH", 16, "transformer blocks"),
    ("NORM", "layernorm", "normalisation layer"),
    ("DIM_MUL", [], "[block, factor] width multipliers"),
    ("HEAD_MUL", [], "[block, factor] head multipliers"),
    ("POOL_KV_STRIDE", [], "per-block k/v pooling strides"),
    ("POOL_KV_STRIDE_ADAPTIVE", None, "initial adaptive k/v stride"),
    ("POOL_Q_STRIDE", [], "per-block q pooling strides"),
    ("POOL_KVQ_KERNEL", None, "pooling kernel of q, k, v"),
    ("ZERO_DECAY_POS_CLS", True, "no weight decay on position embedding and class token"),
    ("NORM_STEM", False, "norm after the patch embedding"),
    ("SEP_POS_EMBED", False, "separate space / time position embeddings"),
    ("DROPOUT_RATE", 0.0, "dropout in attention / MLP"),
    ("USE_ABS_POS", True, "absolute position embedding"),
    ("REL_POS_SPATIAL", False, "relative spatial position bias"),
    ("REL_POS_TEMPORAL", False, "relative temporal position bias"),
    ("REL_POS_ZERO_INIT", False, "zero-init relative position bias"),
    ("RESIDUAL_POOLING", False, "residual pooling connection"),
    ("DIM_MUL_IN_ATT", False, "width change inside attention"),
    ("SEPARATE_QKV", False, "separate q, k, v linears"),
    ("HEAD_INIT_SCALE", 1.0, "head weight init scale"),
    ("USE_MEAN_POOLING", False, "mean-pool tokens instead of the class token"),
    ("USE_FIXED_SINCOS_POS", False, "fixed sin-cos position embedding"),
]

_MVIT_REV: List[_Entry] = [
    ("ENABLE", False, "reversible MViT"),
    ("RESPATH_FUSE", "concat", "fusion of the residual paths"),
    ("BUFFER_LAYERS", [], "layers buffered between stages"),
    ("RES_PATH", "conv", "residual path type"),
    ("PRE_Q_FUSION", "avg", "fusion before q pooling"),
]

_MASK: List[_Entry] = [
    ("ENABLE", False, "masked-feature pre-training"),
    ("MAE_ON", False, "masked auto-encoding"),
    ("MAE_RND_MASK", False, "random MAE masks"),
    ("PER_FRAME_MASKING", False, "mask each frame independently"),
    ("TIME_STRIDE_LOSS", True, "temporal stride in the loss"),
    ("NORM_PRED_PIXEL", True, "normalise target pixels"),
    ("SCALE_INIT_BY_DEPTH", False, "scale init by depth"),
    ("DECODER_EMBED_DIM", 512, "decoder width"),
    ("DECODER_SEP_POS_EMBED", False, "decoder separate position embeddings"),
    ("DEC_KV_KERNEL", [], "decoder k/v pooling kernel"),
    ("DEC_KV_STRIDE", [], "decoder k/v pooling stride"),
    ("PRETRAIN_DEPTH", [15], "pre-training depths"),
    ("HEAD_TYPE", "separate", "prediction head type"),
    ("DECODER_DEPTH", 0, "decoder blocks"),
    ("PRED_HOG", False, "predict HOG features"),
]

_BENCHMARK: List[_Entry] = [
    ("NUM_EPOCHS", 5, "epochs of the loader benchmark"),
    ("LOG_PERIOD", 100, "log period of the loader benchmark"),
    ("SHUFFLE", True, "shuffle in the loader benchmark"),
]

_DETECTION: List[_Entry] = [
    ("ENABLE", False, "spatio-temporal detection (AVA) instead of classification"),
    ("ALIGNED", True, "ROIAlign with aligned corners"),
    ("SPATIAL_SCALE_FACTOR", 16, "feature stride seen by ROIAlign"),
    ("ROI_XFORM_RESOLUTION", 7, "ROIAlign output size"),
]

_AVA: List[_Entry] = [
    ("FRAME_DIR", "/mnt/fair-flash3-east/ava_trainval_frames.img/", "AVA frame folder"),
    ("FRAME_LIST_DIR", "/mnt/vol/gfsai-flash3-east/ai-group/users/haoqifan/ava/frame_list/", "AVA frame lists"),
    ("ANNOTATION_DIR", "/mnt/vol/gfsai-flash3-east/ai-group/users/haoqifan/ava/frame_list/", "AVA annotations"),
    ("TRAIN_LISTS", ["train.csv"], "training frame lists"),
    ("TEST_LISTS", ["val.csv"], "test frame lists"),
    ("TRAIN_GT_BOX_LISTS", ["ava_train_v2.2.csv"], "ground-truth boxes for training"),
    ("TRAIN_PREDICT_BOX_LISTS", [], "detected boxes added in training"),
    ("TEST_PREDICT_BOX_LISTS", ["ava_val_predicted_boxes.csv"], "detected boxes for testing"),
    ("DETECTION_SCORE_THRESH", 0.9, "least detector score of a used box"),
    ("BGR", False, "frames in BGR order"),
    ("TRAIN_USE_COLOR_AUGMENTATION", False, "colour augmentation in training"),
    ("TRAIN_PCA_JITTER_ONLY", True, "only PCA lighting jitter"),
    ("TEST_FORCE_FLIP", False, "flip test frames"),
    ("FULL_TEST_ON_VAL", False, "full evaluation on val"),
    ("LABEL_MAP_FILE", "ava_action_list_v2.2_for_activitynet_2019.pbtxt", "class map"),
    ("EXCLUSION_FILE", "ava_val_excluded_timestamps_v2.2.csv", "excluded timestamps"),
    ("GROUNDTRUTH_FILE", "ava_val_v2.2.csv", "evaluation ground truth"),
    ("IMG_PROC_BACKEND", "cv2", "image backend"),
]

_TENSORBOARD: List[_Entry] = [
    ("ENABLE", False, "write TensorBoard events"),
    ("PREDICTIONS_PATH", "", "pickled predictions to visualise"),
    ("LOG_DIR", "", "event folder (under OUTPUT_DIR)"),
    ("CLASS_NAMES_PATH", "", "json class-name -> id map"),
    ("CATEGORIES_PATH", "", "json parent-class -> child classes map"),
]
_TB_CONFUSION: List[_Entry] = [
    ("ENABLE", False, "plot confusion matrices"),
    ("FIGSIZE", [8, 8], "figure size"),
    ("SUBSET_PATH", "", "classes to include"),
]
_TB_HISTOGRAM: List[_Entry] = [
    ("ENABLE", False, "plot prediction histograms"),
    ("SUBSET_PATH", "", "classes to include"),
    ("TOPK", 10, "top-k predictions plotted"),
    ("FIGSIZE", [8, 8], "figure size"),
]
_TB_MODEL_VIS: List[_Entry] = [
    ("ENABLE", False, "visualise the model"),
    ("MODEL_WEIGHTS", False, "plot weights"),
    ("ACTIVATIONS", False, "plot activations"),
    ("INPUT_VIDEO", False, "plot the input clip"),
    ("LAYER_LIST", [], "layers to plot"),
    ("TOPK_PREDS", 1, "top-k predictions shown"),
    ("COLORMAP", "Pastel2", "colour map"),
]
_TB_GRAD_CAM: List[_Entry] = [
    ("ENABLE", True, "Grad-CAM maps (when MODEL_VIS is enabled)"),
    ("LAYER_LIST", [], "layers for Grad-CAM"),
    ("USE_TRUE_LABEL", False, "use the true label instead of the prediction"),
    ("COLORMAP", "viridis", "colour map"),
]
_TB_WRONG: List[_Entry] = [
    ("ENABLE", False, "log misclassified clips"),
    ("TAG", "Incorrectly classified videos.", "tag of those clips"),
    ("SUBSET_PATH", "", "classes to include"),
]

_DEMO: List[_Entry] = [
    ("ENABLE", False, "run the webcam / video demo"),
    ("LABEL_FILE_PATH", "", "json class-name -> id map"),
    ("WEBCAM", -1, "webcam index (-1 = use INPUT_VIDEO)"),
    ("INPUT_VIDEO", "", "input video"),
    ("DISPLAY_WIDTH", 0, "window width"),
    ("DISPLAY_HEIGHT", 0, "window height"),
    ("DETECTRON2_CFG", "COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml", "person detector config"),
    (
        "DETECTRON2_WEIGHTS",
        "detectron2://COCO-Detection/faster_rcnn_R_50_FPN_3x/137849458/model_final_280758.pkl",
        "person detector weights",
    ),
    ("DETECTRON2_THRESH", 0.9, "person detector threshold"),
    ("BUFFER_SIZE", 0, "frames overlapping consecutive clips"),
    ("OUTPUT_FILE", "", "output video"),
    ("OUTPUT_FPS", -1, "output frame rate"),
    ("INPUT_FORMAT", "BGR", "frame channel order"),
    ("CLIP_VIS_SIZE", 10, "frames shown per clip"),
    ("NUM_VIS_INSTANCES", 2, "processes used for drawing"),
    ("PREDS_BOXES", "", "precomputed boxes"),
    ("THREAD_ENABLE", False, "threaded reading / drawing"),
    ("NUM_CLIPS_SKIP", 0, "clips skipped between predictions"),
    ("GT_BOXES", "", "ground-truth boxes to draw"),
    ("STARTING_SECOND", 900, "first second of the video"),
    ("FPS", 30, "frame rate of the input"),
    ("VIS_MODE", "thres", "label display: thres | top-k"),
    ("COMMON_CLASS_THRES", 0.7, "threshold for common classes"),
    ("UNCOMMON_CLASS_THRES", 0.3, "threshold for uncommon classes"),
    ("COMMON_CLASS_NAMES", ["watch (a person)", "talk to (e.g., self, a person, a group)", "listen to (a person)",
                            "touch (an object)", "carry/hold (an object)", "walk", "sit", "lie/sleep",
                            "bend/bow (at the waist)"], "classes treated as common"),
    ("SLOWMO", 1, "slow-motion factor of the output"),
]


def _node(entries: List[_Entry]) -> CfgNode:
    node = CfgNode()
    for key, default, _meaning in entries:
        node[key] = list(default) if isinstance(default, list) else default
    return node


def add_compat_nodes(cfg: CfgNode) -> None:
    """Add PySlowFast's nodes for tasks this runtime does not run (fresh objects on every call)."""
    cfg.CONTRASTIVE = _node(_CONTRASTIVE)
    cfg.AUG = _node(_AUG)
    # Mask visualisation for MAE models.
    cfg.VIS_MASK = _node([("ENABLE", False, "visualise MAE masks")])
    cfg.MIXUP = _node(_MIXUP)
    cfg.MVIT = _node(_MVIT)
    cfg.MVIT.REV = _node(_MVIT_REV)
    cfg.MASK = _node(_MASK)
    cfg.BENCHMARK = _node(_BENCHMARK)
    cfg.DETECTION = _node(_DETECTION)
    cfg.AVA = _node(_AVA)
    cfg.TENSORBOARD = _node(_TENSORBOARD)
    cfg.TENSORBOARD.CONFUSION_MATRIX = _node(_TB_CONFUSION)
    cfg.TENSORBOARD.HISTOGRAM = _node(_TB_HISTOGRAM)
    cfg.TENSORBOARD.MODEL_VIS = _node(_TB_MODEL_VIS)
    cfg.TENSORBOARD.MODEL_VIS.GRAD_CAM = _node(_TB_GRAD_CAM)
    cfg.TENSORBOARD.WRONG_PRED_VIS = _node(_TB_WRONG)
    cfg.DEMO = _node(_DEMO)


# Keys (or whole nodes, ending in ".*") that are accepted but not implemented by this runtime: setting one to a
# non-default value is logged once per load. Nodes and keys the runtime reads are not listed; every other key of the
# schema is read somewhere in the package (tests/test_config_honesty.py walks the whole schema).
UNIMPLEMENTED = (
    "CONTRASTIVE.*", "AUG.*", "VIS_MASK.*", "MIXUP.*", "MVIT.*", "MASK.*", "BENCHMARK.*", "DETECTION.*", "AVA.*",
    # TENSORBOARD.{ENABLE, LOG_DIR, CLASS_NAMES_PATH, CONFUSION_MATRIX.ENABLE, CONFUSION_MATRIX.FIGSIZE} are read
    # by mtnet_plugin/engine/tensorboard.py; the rest of the node is not.
    "TENSORBOARD.PREDICTIONS_PATH", "TENSORBOARD.CATEGORIES_PATH", "TENSORBOARD.CONFUSION_MATRIX.SUBSET_PATH",
    "TENSORBOARD.HISTOGRAM.*", "TENSORBOARD.MODEL_VIS.*", "TENSORBOARD.WRONG_PRED_VIS.*",
    "DEMO.*",
    "BN.NUM_SPLITS", "BN.NUM_SYNC_DEVICES", "BN.GLOBAL_SYNC",
    "TRAIN.CHECKPOINT_INFLATE", "TRAIN.CHECKPOINT_IN_INIT",
    "TEST.NUM_TEMPORAL_CLIPS",
    "MODEL.ACT_CHECKPOINT", "MODEL.DETACH_FINAL_FC", "MODEL.FP16_ALLREDUCE", "MODEL.DROPCONNECT_RATE",
    "DATA.TRAIN_PCA_EIGVAL", "DATA.TRAIN_PCA_EIGVEC", "DATA.PATH_TO_PRELOAD_IMDB",
    "DATA.TRAIN_JITTER_SCALES_RELATIVE", "DATA.TRAIN_JITTER_ASPECT_RELATIVE", "DATA.TRAIN_JITTER_MOTION_SHIFT",
    "DATA.DECODING_SHORT_SIZE", "DATA.MULTI_LABEL", "DATA.REVERSE_INPUT_CHANNEL", "DATA.TRAIN_CROP_NUM_TEMPORAL",
    "DATA.TRAIN_CROP_NUM_SPATIAL", "DATA.COLOR_RND_GRAYSCALE", "DATA.LOADER_CHUNK_SIZE",
    "DATA.LOADER_CHUNK_OVERALL_SIZE", "DATA.SKIP_ROWS", "DATA.TIME_DIFF_PROB", "DATA.SSL_COLOR_JITTER",
    "DATA.SSL_COLOR_BRI_CON_SAT", "DATA.SSL_COLOR_HUE", "DATA.SSL_MOCOV2_AUG", "DATA.SSL_BLUR_SIGMA_MIN",
    "DATA.SSL_BLUR_SIGMA_MAX", "DATA.IN22K_TRAINVAL", "DATA.IN22k_VAL_IN1K", "DATA.IN_VAL_CROP_RATIO",
    "DATA.DUMMY_LOAD",
    "SOLVER.LARS_ON", "SOLVER.LAYER_DECAY", "SOLVER.STEP_SIZE", "SOLVER.WARMUP_FACTOR",
    "MULTIGRID.BN_BASE_SIZE",
    # MTNet and X3D are built from X3D.* (and RESNET.ZERO_INIT_FINAL_BN); these describe PySlowFast's ResNet,
    # SlowFast and non-local networks.
    "RESNET.TRANS_FUNC", "RESNET.NUM_GROUPS", "RESNET.WIDTH_PER_GROUP", "RESNET.INPLACE_RELU", "RESNET.STRIDE_1X1",
    "RESNET.ZERO_INIT_FINAL_CONV", "RESNET.DEPTH", "RESNET.NUM_BLOCK_TEMP_KERNEL", "RESNET.SPATIAL_STRIDES",
    "RESNET.SPATIAL_DILATIONS", "SLOWFAST.*", "NONLOCAL.*",
)
