"""PySlowFast's config schema (the nodes a video classification run reads), with the same key names, defaults and
types, plus the ``MTNET`` and ``SYNTHETIC`` nodes.

The schema matches PySlowFast at commit ``287ec00`` (``slowfast/config/defaults.py``) so its YAML
files load unchanged. Nodes that serve tasks we do not run (detection, self-supervision, MViT, demos, ...) live in
:mod:`mtnet_plugin.config.compat_nodes`; they are accepted and a non-default value is reported (see
:mod:`mtnet_plugin.config.loading`). Keys added by this project are marked ``[mtnet_plugin]``; the ``MTNET``
(``mtnet.py``) and ``SYNTHETIC`` (``synthetic.py``) nodes are added by their own modules.

``get_cfg()`` builds a fresh tree on every call, so no module holds a mutable default config.
"""
from fvcore.common.config import CfgNode

from .compat_nodes import add_compat_nodes
from .mtnet import add_mtnet_config
from .synthetic import add_synthetic_config


def _add_bn(cfg: CfgNode) -> None:
    cfg.BN = CfgNode()
    # Recompute BN statistics on training batches before checkpoints/evaluation ("precise BN").
    cfg.BN.USE_PRECISE_STATS = False
    # How many training batches the precise-BN pass reads.
    cfg.BN.NUM_BATCHES_PRECISE = 200
    # Weight decay applied to BN weights and biases (their own optimizer group).
    cfg.BN.WEIGHT_DECAY = 0.0
    # Normalisation layer: "batchnorm" | "sync_batchnorm" (engine converts) | "sub_batchnorm".
    cfg.BN.NORM_TYPE = "batchnorm"
    # Number of batch splits normalised separately by sub-batch BN.
    cfg.BN.NUM_SPLITS = 1
    # Devices whose statistics a naive sync-BN pools together.
    cfg.BN.NUM_SYNC_DEVICES = 1
    # Whether sync-BN pools statistics over every device of every machine.
    cfg.BN.GLOBAL_SYNC = False
    # [mtnet_plugin] BN epsilon (PySlowFast hard-codes 1e-5 in its models; docs/design.md model contract).
    cfg.BN.EPSILON = 1e-5
    # [mtnet_plugin] BN running-statistics momentum (PySlowFast hard-codes 0.1).
    cfg.BN.MOMENTUM = 0.1


def _add_train(cfg: CfgNode) -> None:
    cfg.TRAIN = CfgNode()
    # Run training.
    cfg.TRAIN.ENABLE = True
    # Abort when the loss exceeds this multiple of recent losses (0 disables the check).
    cfg.TRAIN.KILL_LOSS_EXPLOSION_FACTOR = 0.0
    # [mtnet_plugin] A NaN/inf gradient norm with a finite loss: "stop" (TrainingDiverged) | "skip" the step.
    cfg.TRAIN.NONFINITE_GRAD = "stop"
    # [mtnet_plugin] With NONFINITE_GRAD "skip": more skipped steps than this in one epoch stop training.
    cfg.TRAIN.NONFINITE_GRAD_MAX_SKIPS = 10
    # [mtnet_plugin] Signals that stop training after the current iteration with a mid-epoch checkpoint (preemption;
    # add "SIGUSR1" for SLURM's --signal). [] keeps Python's default handling.
    cfg.TRAIN.PREEMPT_SIGNALS = ["SIGTERM"]
    # Dataset name (the Kinetics-style csv list dataset is "kinetics").
    cfg.TRAIN.DATASET = "kinetics"
    # Clips per machine per iteration; each of the NUM_GPUS processes gets BATCH_SIZE / NUM_GPUS.
    cfg.TRAIN.BATCH_SIZE = 64
    # Validate every this many epochs.
    cfg.TRAIN.EVAL_PERIOD = 10
    # Save a checkpoint every this many epochs.
    cfg.TRAIN.CHECKPOINT_PERIOD = 10
    # Resume from the last checkpoint in OUTPUT_DIR/checkpoints when there is one.
    cfg.TRAIN.AUTO_RESUME = True
    # Weights to start from ("" = random initialisation).
    cfg.TRAIN.CHECKPOINT_FILE_PATH = ""
    # Format of that file: "pytorch" | "caffe2".
    cfg.TRAIN.CHECKPOINT_TYPE = "pytorch"
    # Inflate 2D weights of the checkpoint to 3D.
    cfg.TRAIN.CHECKPOINT_INFLATE = False
    # Start at epoch 0 even if the checkpoint records a later epoch.
    cfg.TRAIN.CHECKPOINT_EPOCH_RESET = False
    # Name prefixes stripped from checkpoint parameter names before loading.
    cfg.TRAIN.CHECKPOINT_CLEAR_NAME_PATTERN = ()
    # Refuse a CHECKPOINT_FILE_PATH that fills less than this share of the model's parameter elements (a
    # checkpoint of another model); a classifier re-initialised for another class count is a small share.
    # 0 accepts any partial load (engine/checkpoint.py, docs/recipes.md).
    cfg.TRAIN.CHECKPOINT_MIN_LOADED_SHARE = 0.5
    # Train with automatic mixed precision (float16 autocast + grad scaler).
    cfg.TRAIN.MIXED_PRECISION = False
    # Inflate parameters from an image model at initialisation.
    cfg.TRAIN.CHECKPOINT_IN_INIT = False


def _add_test(cfg: CfgNode) -> None:
    cfg.TEST = CfgNode()
    # Run multi-view testing.
    cfg.TEST.ENABLE = True
    # Dataset name for testing.
    cfg.TEST.DATASET = "kinetics"
    # Views per machine per iteration (divided by NUM_GPUS like TRAIN.BATCH_SIZE).
    cfg.TEST.BATCH_SIZE = 8
    # Weights to test ("" = last checkpoint in OUTPUT_DIR, then TRAIN.CHECKPOINT_FILE_PATH).
    cfg.TEST.CHECKPOINT_FILE_PATH = ""
    # Temporal clips per video, uniformly spread (10 in the 30-view protocol).
    cfg.TEST.NUM_ENSEMBLE_VIEWS = 10
    # Spatial crops per clip: 3 (left/centre/right or top/centre/bottom) or 1 (centre).
    cfg.TEST.NUM_SPATIAL_CROPS = 3
    # Format of TEST.CHECKPOINT_FILE_PATH: "pytorch" | "caffe2".
    cfg.TEST.CHECKPOINT_TYPE = "pytorch"
    # File (under OUTPUT_DIR) for the aggregated predictions and labels ("" = do not save).
    cfg.TEST.SAVE_RESULTS_PATH = ""
    # Several NUM_ENSEMBLE_VIEWS values to test in turn ([] = just NUM_ENSEMBLE_VIEWS).
    cfg.TEST.NUM_TEMPORAL_CLIPS = []


def _add_resnet_x3d(cfg: CfgNode) -> None:
    cfg.RESNET = CfgNode()
    # Residual transformation: "bottleneck_transform" | "basic_transform" | "x3d_transform".
    cfg.RESNET.TRANS_FUNC = "bottleneck_transform"
    # Groups of the 3x3x3 convolution (1 = ResNet, >1 = ResNeXt).
    cfg.RESNET.NUM_GROUPS = 1
    # Channels per group in the first stage.
    cfg.RESNET.WIDTH_PER_GROUP = 64
    # ReLU in place.
    cfg.RESNET.INPLACE_RELU = True
    # Put the spatial stride on the 1x1 conv instead of the 3x3 conv.
    cfg.RESNET.STRIDE_1X1 = False
    # Start each block's last BN with a zero scale, so blocks begin as identities.
    cfg.RESNET.ZERO_INIT_FINAL_BN = False
    # Start each block's last conv with zero weights.
    cfg.RESNET.ZERO_INIT_FINAL_CONV = False
    # Network depth (X3D only checks it is a known depth).
    cfg.RESNET.DEPTH = 50
    # Per stage and pathway: how many blocks use a temporal kernel > 1.
    cfg.RESNET.NUM_BLOCK_TEMP_KERNEL = [[3], [4], [6], [3]]
    # Per stage and pathway: spatial stride of the stage.
    cfg.RESNET.SPATIAL_STRIDES = [[1], [2], [2], [2]]
    # Per stage and pathway: spatial dilation of the stage.
    cfg.RESNET.SPATIAL_DILATIONS = [[1], [1], [1], [1]]

    cfg.X3D = CfgNode()
    # Channel expansion (gamma_w).
    cfg.X3D.WIDTH_FACTOR = 1.0
    # Depth expansion (gamma_d): blocks per stage are ceil(factor * [1, 2, 5, 3]).
    cfg.X3D.DEPTH_FACTOR = 1.0
    # Inner width of a block relative to its output width (gamma_b).
    cfg.X3D.BOTTLENECK_FACTOR = 1.0
    # Width of the head's 1x1x1 projection before the classifier.
    cfg.X3D.DIM_C5 = 2048
    # Width of the stem.
    cfg.X3D.DIM_C1 = 12
    # Scale the res2 width by WIDTH_FACTOR as well.
    cfg.X3D.SCALE_RES2 = False
    # BN after the head's last linear projection.
    cfg.X3D.BN_LIN5 = False
    # Make the blocks' 3x3x3 convolution channelwise (depthwise).
    cfg.X3D.CHANNELWISE_3x3x3 = True


def _add_model(cfg: CfgNode) -> None:
    cfg.MODEL = CfgNode()
    # Input packing family; "mtnet" is ours (single pathway). With MODEL_NAME X3D/SlowFast it builds MTNet.
    cfg.MODEL.ARCH = "slowfast"
    # Name in the model registry to build.
    cfg.MODEL.MODEL_NAME = "SlowFast"
    # Number of output classes.
    cfg.MODEL.NUM_CLASSES = 400
    # Loss: "cross_entropy" | "bce" | "bce_logit" | "soft_cross_entropy" ...
    cfg.MODEL.LOSS_FUNC = "cross_entropy"
    # Archs fed one tensor per clip ([frames]); [mtnet_plugin] adds "mtnet".
    cfg.MODEL.SINGLE_PATHWAY_ARCH = ["2d", "c2d", "i3d", "slow", "x3d", "mvit", "maskmvit", "mtnet"]
    # Archs fed a slow and a fast pathway.
    cfg.MODEL.MULTI_PATHWAY_ARCH = ["slowfast"]
    # Dropout before the classifier.
    cfg.MODEL.DROPOUT_RATE = 0.5
    # Stochastic depth rate (declared by PySlowFast, read nowhere there).
    cfg.MODEL.DROPCONNECT_RATE = 0.0
    # Std of the normal init of the classifier weights.
    cfg.MODEL.FC_INIT_STD = 0.01
    # Activation of the head at test time: "softmax" | "sigmoid" | "none".
    cfg.MODEL.HEAD_ACT = "softmax"
    # Recompute activations in the backward pass to save memory.
    cfg.MODEL.ACT_CHECKPOINT = False
    # Train only the final classifier.
    cfg.MODEL.DETACH_FINAL_FC = False
    # Keep BN statistics frozen during training.
    cfg.MODEL.FROZEN_BN = False
    # Compress DDP gradients to float16 for the all-reduce.
    cfg.MODEL.FP16_ALLREDUCE = False

    cfg.SLOWFAST = CfgNode()
    # Channel ratio slow / fast pathway.
    cfg.SLOWFAST.BETA_INV = 8
    # Frame-rate ratio fast / slow pathway.
    cfg.SLOWFAST.ALPHA = 8
    # Channel ratio of the fast-to-slow fusion conv.
    cfg.SLOWFAST.FUSION_CONV_CHANNEL_RATIO = 2
    # Temporal kernel of the fusion conv.
    cfg.SLOWFAST.FUSION_KERNEL_SZ = 5

    cfg.NONLOCAL = CfgNode()
    # Per stage and pathway: block indices followed by a non-local block.
    cfg.NONLOCAL.LOCATION = [[[]], [[]], [[]], [[]]]
    # Per stage and pathway: groups of the non-local block.
    cfg.NONLOCAL.GROUP = [[1], [1], [1], [1]]
    # Non-local affinity: "dot_product" | "softmax".
    cfg.NONLOCAL.INSTANTIATION = "dot_product"
    # Per stage and pathway: pooling kernel inside the non-local block.
    cfg.NONLOCAL.POOL = [[[1, 2, 2], [1, 2, 2]] for _ in range(4)]


def add_data_config(cfg: CfgNode) -> None:
    """Add the DATA node (PySlowFast's keys plus the data keys of this project)."""
    d = cfg.DATA = CfgNode()
    # Folder holding {train,val,test}.csv.
    d.PATH_TO_DATA_DIR = ""
    # Separator between path and label in a list line (exact string split).
    d.PATH_LABEL_SEPARATOR = " "
    # Prefix joined to relative video paths of the lists (absolute paths are kept).
    d.PATH_PREFIX = ""
    # Frames per clip (T).
    d.NUM_FRAMES = 8
    # Frame step at TARGET_FPS (tau): a clip spans NUM_FRAMES * SAMPLING_RATE frames at TARGET_FPS.
    d.SAMPLING_RATE = 8
    # Eigenvalues for PCA lighting jitter.
    d.TRAIN_PCA_EIGVAL = [0.225, 0.224, 0.229]
    # Eigenvectors for PCA lighting jitter.
    d.TRAIN_PCA_EIGVEC = [[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]]
    # Path of a preloaded image database (image datasets only).
    d.PATH_TO_PRELOAD_IMDB = ""
    # Per-channel mean subtracted from inputs scaled to [0, 1].
    d.MEAN = [0.45, 0.45, 0.45]
    # Input channels per pathway (X3D/MTNet: [3]).
    d.INPUT_CHANNEL_NUM = [3, 3]
    # Per-channel std dividing inputs scaled to [0, 1].
    d.STD = [0.225, 0.225, 0.225]
    # Train: short side resized to round(U[min, max]) before the random crop.
    d.TRAIN_JITTER_SCALES = [256, 320]
    # Inception-style relative area range (empty = use TRAIN_JITTER_SCALES).
    d.TRAIN_JITTER_SCALES_RELATIVE = []
    # Inception-style aspect ratio range.
    d.TRAIN_JITTER_ASPECT_RELATIVE = []
    # Test clip k of V starts at k * floor(delta / (V - 1)) instead of delta * k / V.
    d.USE_OFFSET_SAMPLING = False
    # Shift the crop over time (motion augmentation).
    d.TRAIN_JITTER_MOTION_SHIFT = False
    # Side of the square training crop.
    d.TRAIN_CROP_SIZE = 224
    # Side of the square test crops (and the test short side when NUM_SPATIAL_CROPS > 1).
    d.TEST_CROP_SIZE = 256
    # Frame rate at which SAMPLING_RATE is measured; clips are converted to each video's own fps.
    d.TARGET_FPS = 30
    # Train: add U[0, x] to TARGET_FPS per clip.
    d.TRAIN_JITTER_FPS = 0.0
    # Decoder: "pyav" | "torchvision" (both decode with PyAV here; torchvision's reader no longer exists).
    d.DECODING_BACKEND = "torchvision"
    # Short side the decoder may resize to (unused: transforms resize).
    d.DECODING_SHORT_SIZE = 256
    # Sample the jitter scale as 1 / U[1/max, 1/min] instead of U[min, max].
    d.INV_UNIFORM_SAMPLE = False
    # Random horizontal flip in train and val.
    d.RANDOM_FLIP = True
    # Multi-label targets (mAP evaluation).
    d.MULTI_LABEL = False
    # How views of a video are combined at test time: "sum" | "max".
    d.ENSEMBLE_METHOD = "sum"
    # Feed BGR instead of RGB.
    d.REVERSE_INPUT_CHANNEL = False
    # Train: temporal clips drawn per video per sample.
    d.TRAIN_CROP_NUM_TEMPORAL = 1
    # Train: spatial crops drawn per clip per sample.
    d.TRAIN_CROP_NUM_SPATIAL = 1
    # Probability of a random grayscale conversion.
    d.COLOR_RND_GRAYSCALE = 0.0
    # Read the lists in chunks of this many rows (0 = whole file).
    d.LOADER_CHUNK_SIZE = 0
    # Total rows of a chunked list.
    d.LOADER_CHUNK_OVERALL_SIZE = 0
    # Rows skipped at the start of a chunked list.
    d.SKIP_ROWS = 0
    # Probability of a grayscale temporal-difference input.
    d.TIME_DIFF_PROB = 0.0
    # Self-supervised colour jitter.
    d.SSL_COLOR_JITTER = False
    # Brightness, contrast, saturation of that jitter.
    d.SSL_COLOR_BRI_CON_SAT = [0.4, 0.4, 0.4]
    # Hue of that jitter.
    d.SSL_COLOR_HUE = 0.1
    # MoCo-v2 augmentations.
    d.SSL_MOCOV2_AUG = False
    # Gaussian blur sigma lower bounds.
    d.SSL_BLUR_SIGMA_MIN = [0.0, 0.1]
    # Gaussian blur sigma upper bounds.
    d.SSL_BLUR_SIGMA_MAX = [0.0, 2.0]
    # ImageNet-22k train+val (image datasets).
    d.IN22K_TRAINVAL = False
    # ImageNet-1k val list for a 22k model.
    d.IN22k_VAL_IN1K = ""
    # Centre-crop ratio for image validation.
    d.IN_VAL_CROP_RATIO = 0.875
    # Return a fixed dummy sample instead of decoding (benchmarks).
    d.DUMMY_LOAD = False
    # [mtnet_plugin] Extra attempts at decoding the same file after a failure (PySlowFast hard-codes retries).
    d.DECODE_RETRIES = 2
    # [mtnet_plugin] Train/val: other random samples tried in place of a broken one before giving up.
    d.MAX_REPLACEMENTS = 20


def _add_solver(cfg: CfgNode) -> None:
    s = cfg.SOLVER = CfgNode()
    # Learning rate at the end of warm-up (before any NUM_SHARDS scaling).
    s.BASE_LR = 0.1
    # Schedule: "cosine" | "steps_with_relative_lrs".
    s.LR_POLICY = "cosine"
    # Learning rate the cosine ends at.
    s.COSINE_END_LR = 0.0
    # Decay factor of step schedules.
    s.GAMMA = 0.1
    # Step size (epochs) of exponential schedules.
    s.STEP_SIZE = 1
    # Epochs at which step schedules change the rate.
    s.STEPS = []
    # Relative rates (x BASE_LR) of each step.
    s.LRS = []
    # Training epochs.
    s.MAX_EPOCH = 300
    # SGD momentum.
    s.MOMENTUM = 0.9
    # SGD dampening.
    s.DAMPENING = 0.0
    # Nesterov momentum.
    s.NESTEROV = True
    # L2 weight decay of non-BN parameters.
    s.WEIGHT_DECAY = 1e-4
    # Warm-up start as a fraction of BASE_LR (declared, unused by PySlowFast's schedules).
    s.WARMUP_FACTOR = 0.1
    # Linear warm-up length in epochs (float).
    s.WARMUP_EPOCHS = 0.0
    # Learning rate at the start of warm-up.
    s.WARMUP_START_LR = 0.01
    # Optimiser: "sgd" | "adam" | "adamw".
    s.OPTIMIZING_METHOD = "sgd"
    # Multiply BASE_LR, WARMUP_START_LR and COSINE_END_LR by NUM_SHARDS.
    s.BASE_LR_SCALE_NUM_SHARDS = False
    # Start the cosine after warm-up instead of at epoch 0.
    s.COSINE_AFTER_WARMUP = False
    # No weight decay on 1-D parameters (biases, norms).
    s.ZERO_WD_1D_PARAM = False
    # Clip gradients by value (None = off).
    s.CLIP_GRAD_VAL = None
    # Clip gradients by global L2 norm (None = off).
    s.CLIP_GRAD_L2NORM = None
    # Wrap the optimiser in LARS.
    s.LARS_ON = False
    # Layer-wise rate decay (1.0 = off).
    s.LAYER_DECAY = 1.0
    # Adam betas.
    s.BETAS = (0.9, 0.999)
    # [mtnet_plugin] Rate multiplier for convolution weights (paper Sec. IV-C: 0.1 when fine-tuning on UCF-101).
    s.CONV_WEIGHT_LR_MULT = 1.0


def _add_runtime(cfg: CfgNode) -> None:
    # Task name ("" = supervised classification).
    cfg.TASK = ""
    # Processes (GPUs) per machine; 0 runs on CPU.
    cfg.NUM_GPUS = 1
    # Machines.
    cfg.NUM_SHARDS = 1
    # Index of this machine.
    cfg.SHARD_ID = 0
    # Folder for checkpoints, logs and results.
    cfg.OUTPUT_DIR = "."
    # Seed of python, numpy and torch RNGs.
    cfg.RNG_SEED = 1
    # Log every this many iterations.
    cfg.LOG_PERIOD = 10
    # Log parameters, FLOPs and activations of the model at start.
    cfg.LOG_MODEL_INFO = True
    # torch.distributed backend.
    cfg.DIST_BACKEND = "nccl"

    cfg.DATA_LOADER = CfgNode()
    # Decoding worker processes per loader (0 = decode in the main process).
    cfg.DATA_LOADER.NUM_WORKERS = 8
    # Pin host memory of batches (applied only when CUDA is available).
    cfg.DATA_LOADER.PIN_MEMORY = True
    # Let PyAV decode with several threads.
    cfg.DATA_LOADER.ENABLE_MULTI_THREAD_DECODE = False

    m = cfg.MULTIGRID = CfgNode()
    # Multigrid trains this many times the epochs of the base schedule.
    m.EPOCH_FACTOR = 1.5
    # Short cycle: batches alternate crop factors SHORT_CYCLE_FACTORS and the full crop.
    m.SHORT_CYCLE = False
    # Crop-size factors of the short cycle's smaller shapes.
    m.SHORT_CYCLE_FACTORS = [0.5, 0.5**0.5]
    # Long cycle: phases of (frames, crop) factors with larger batches.
    m.LONG_CYCLE = False
    # (temporal, spatial) factors of the long-cycle phases.
    m.LONG_CYCLE_FACTORS = [(0.25, 0.5**0.5), (0.5, 0.5**0.5), (0.5, 1), (1, 1)]
    # Batch size BN statistics are computed over.
    m.BN_BASE_SIZE = 8
    # Evaluations per long-cycle phase.
    m.EVAL_FREQ = 3
    # Largest sampling rate in long-cycle phases (filled in by the schedule).
    m.LONG_CYCLE_SAMPLING_RATE = 0
    # Base batch size, frames and crop (filled in by the schedule).
    m.DEFAULT_B = 0
    m.DEFAULT_T = 0
    m.DEFAULT_S = 0


def get_cfg() -> CfgNode:
    """Return a new default config: PySlowFast's schema + the ``MTNET`` and ``SYNTHETIC`` nodes (unfrozen)."""
    cfg = CfgNode()
    _add_bn(cfg)
    _add_train(cfg)
    _add_test(cfg)
    _add_resnet_x3d(cfg)
    _add_model(cfg)
    add_data_config(cfg)
    _add_solver(cfg)
    _add_runtime(cfg)
    add_compat_nodes(cfg)
    add_mtnet_config(cfg)
    add_synthetic_config(cfg)
    return cfg
