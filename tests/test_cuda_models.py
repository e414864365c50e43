"""MTNet_S/M/L and X3D_S/M/L forward + backward in fp32, fp16 autocast and bf16 autocast (tests/cuda_helpers.py).

On CUDA every preset at its native input (13x160, 16x224, 16x312; batch 2); on the CPU the _S pair shrunk to a
tiny network (6x32), so CI runs the same test bodies. Checked: finite logits and gradients, that autocast really
ran in half precision (the logits come out in the autocast dtype), agreement with the fp32 run within AMP_TOL, and
the fp32 network on the device against the CPU path (NET_TOL).

Frame selection is discontinuous: where two frames score within rounding of each other a change of precision or
device may pick the other one, which moves the logits by far more than rounding (measured on the CPU: one swapped
frame in MTNet_S at a score gap of 3e-4 changed its fp16 logits by 6 %). The comparisons therefore replay the
reference run's frames (``SelectionPin``) and check separately that any frame picked differently was a near-tie.
"""
import pytest
import torch
import torch.nn.functional as F

from mtnet_plugin.models import preset

from cuda_helpers import (
    AMP_TOL,
    SENSITIVITY_FACTOR,
    CPU_PRESETS,
    LOSS_SCALE,
    NET_TOL,
    SelectionPin,
    assert_close,
    all_finite,
    cosine,
    device_path,
    exact_fp32,
    grad_vector,
    model_size,
    preset_params,
    rel_err,
)

DTYPES = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def build(name: str, device: str, seed: int = 0):
    """The preset with every block active (zero_init_final_bn off, so the residual branches contribute), no
    dropout (train-mode forwards must be comparable), and a seeded input and label on ``device``."""
    overrides, batch, t, s = model_size(device, name)
    classes = 400 if device == "cuda" else 10
    torch.manual_seed(seed)
    model = preset(name, num_classes=classes, dropout_rate=0.0, zero_init_final_bn=False, **overrides)
    g = torch.Generator().manual_seed(seed + 1)
    x, y = torch.randn(batch, 3, t, s, s, generator=g), torch.randint(0, classes, (batch,), generator=g)
    return model, x, y


def step(model, x, y, dtype, train=True, restore=True):
    """Forward (train-mode BatchNorm, or eval-mode when not ``train``; autocast when ``dtype``) and backward of
    LOSS_SCALE x cross-entropy; returns (logits, gradient vector / LOSS_SCALE). The BatchNorm running statistics
    are put back afterwards (unless not ``restore``), so every step of a test sees the same model."""
    buffers = [b.detach().clone() for b in model.buffers()]
    model.train(train)
    model.zero_grad(set_to_none=True)
    with torch.autocast(x.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        logits = model(x)
    (F.cross_entropy(logits.float(), y) * LOSS_SCALE).backward()
    model.train()
    if restore:
        with torch.no_grad():
            for b, saved in zip(model.buffers(), buffers):
                b.copy_(saved)
    return logits, grad_vector(model) / LOSS_SCALE


_FP32 = {}


def fp32_reference(device: str, name: str):
    """The fp32 steps on ``device`` (TF32 off), computed once per preset: a dict with the model, x, y, and for
    "train" and "eval" BatchNorm the logits, gradients and the SelectionPin that recorded their frames; and
    "sensitivity": per autocast dtype, how much the fp32 train-step gradients move when only the input is rounded
    to that dtype (same frames), the network's own conditioning at that precision. Kept for the whole session
    (pytest runs each test function over all presets; six models and their gradients fit any GPU)."""
    key = (device, name)
    if key not in _FP32:
        model, x, y = build(name, device)
        model, x, y = model.to(device), x.to(device), y.to(device)
        ref = dict(model=model, x=x, y=y, sensitivity={})
        with exact_fp32():
            for mode in ("train", "eval"):
                pin = SelectionPin(model).record()
                logits, grads = step(model, x, y, None, train=mode == "train")
                pin.mode = "off"
                ref[mode] = dict(logits=logits.detach(), grads=grads, pin=pin)
            pin = ref["train"]["pin"]
            for dtype in (torch.float16, torch.bfloat16):
                pin.replay()
                _, rounded = step(model, x.to(dtype).float(), y, None)
                pin.mode = "off"
                ref["sensitivity"][dtype] = rel_err(rounded, ref["train"]["grads"])
        _FP32[key] = ref
    return _FP32[key]


def check_swaps(pin: SelectionPin, dtype, what: str) -> None:
    """Frames the autocast run picked differently from fp32 (while the fp32 frames were replayed) must all be
    near-ties: recorded score gap <= AMP_TOL[dtype]["tie"]."""
    swaps = pin.swaps()
    far = [s for s in swaps if s[2] > AMP_TOL[dtype]["tie"]]
    print(f"{what}: {len(swaps)} of {sum(int(r.shape[0]) for r in pin.recorded)} selections swapped, gaps "
          f"{sorted(round(s[2], 6) for s in swaps)}")
    assert not far, f"{what}: frames swapped where the fp32 scores were not near a tie: {far}"


def autocast_step(ref, mode: str, dtype):
    """The autocast step with fp32's frames replayed; returns (logits, grads, errors against fp32)."""
    pin = ref[mode]["pin"]
    pin.replay()
    try:
        logits, grads = step(ref["model"], ref["x"], ref["y"], dtype, train=mode == "train")
    finally:
        pin.mode = "off"
    assert logits.dtype == dtype, f"autocast did not run the head in {dtype}: logits are {logits.dtype}"
    assert all_finite(logits) and all_finite(grads), "non-finite logits or gradients"
    r = ref[mode]
    errs = dict(logits_rel=rel_err(logits.float(), r["logits"]), grad_rel=rel_err(grads, r["grads"]),
                grad_cos=cosine(grads, r["grads"]))
    return logits, grads, errs


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("device,name", preset_params())
def test_autocast_gradients_agree_with_fp32(device, name, precision):
    """Op-level fidelity of the whole network under autocast: forward + backward with eval-mode (affine)
    BatchNorm, fp32's frames replayed, against fp32 within AMP_TOL."""
    dtype = DTYPES[precision]
    ref = fp32_reference(device, name)
    assert all_finite(ref["eval"]["grads"]) and float(ref["eval"]["grads"].abs().sum()) > 0
    _, _, errs = autocast_step(ref, "eval", dtype)
    print(f"{device} {name} {precision} eval-BN step vs fp32, same frames: {errs}")
    tol = AMP_TOL[dtype]
    assert errs["logits_rel"] <= tol["logits_rel"], errs
    assert errs["grad_rel"] <= tol["grad_rel"] and errs["grad_cos"] >= tol["grad_cos"], errs
    check_swaps(ref["eval"]["pin"], dtype, f"{device} {name} {precision} eval-BN")


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("device,name", preset_params())
def test_autocast_training_step_is_finite_and_agrees_with_fp32(device, name, precision):
    """The training step (train-mode BatchNorm) under autocast: finite, logits within AMP_TOL of fp32 (same
    frames), frames picked differently only at near-ties, and gradients no further from fp32 than
    SENSITIVITY_FACTOR x the move that rounding just the input to the same dtype causes in fp32 (train-mode BN on
    a batch of 2 amplifies rounding: tests/cuda_helpers.py, AMP_TOL); then the plain autocast step (its own
    frames, as training runs) is finite."""
    dtype = DTYPES[precision]
    ref = fp32_reference(device, name)
    assert all_finite(ref["train"]["grads"]) and float(ref["train"]["grads"].abs().sum()) > 0
    _, _, errs = autocast_step(ref, "train", dtype)
    sens = ref["sensitivity"][dtype]
    print(f"{device} {name} {precision} train step vs fp32, same frames: {errs}; input-rounding move {sens:.3g}")
    tol = AMP_TOL[dtype]
    assert errs["logits_rel"] <= tol["logits_rel"], errs
    assert errs["grad_rel"] <= max(tol["train_grad_rel"], SENSITIVITY_FACTOR * sens), (errs, sens)
    check_swaps(ref["train"]["pin"], dtype, f"{device} {name} {precision} train")
    own_logits, own_grads = step(ref["model"], ref["x"], ref["y"], dtype)  # autocast's own frames
    assert all_finite(own_logits) and all_finite(own_grads), f"{name} {precision}: non-finite step"


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("device,name", preset_params())
def test_inference_forward_in_autocast_agrees_with_fp32(device, name, precision):
    """Eval mode under inference_mode (the predict / test path, running BN statistics), fp32's frames replayed."""
    dtype = DTYPES[precision]
    ref_ = fp32_reference(device, name)
    model, x = ref_["model"], ref_["x"]
    model.eval()
    pin = SelectionPin(model)  # its own hooks: the training step's recorded frames stay as they are
    try:
        with torch.inference_mode(), exact_fp32():
            pin.record()
            ref = model(x)
            pin.replay()
            with torch.autocast(x.device.type, dtype=dtype):
                out = model(x)
    finally:
        pin.remove()
        model.train()
    assert ref.dtype == torch.float32 and out.dtype == dtype and out.shape == ref.shape
    assert all_finite(ref) and all_finite(out), f"{name} {precision}: non-finite eval logits"
    assert rel_err(out.float(), ref) <= AMP_TOL[dtype]["logits_rel"], rel_err(out.float(), ref)
    check_swaps(pin, dtype, f"{device} {name} {precision} eval")


@pytest.mark.parametrize("device,name", preset_params(cuda_names=CPU_PRESETS))
def test_fp32_step_on_the_device_matches_the_cpu_path(device, name):
    """The device's fp32 train step against the default CPU path, same weights, input and frames (the CPU's
    replayed; any frame the device picks differently must be a near-tie). On CUDA the native sizes would take
    minutes on the CPU, so both sides use the tiny network; on the CPU the device path is the eager code."""
    overrides, batch, t, s = model_size("cpu", name)
    torch.manual_seed(0)
    cpu_model = preset(name, num_classes=10, dropout_rate=0.0, zero_init_final_bn=False, **overrides)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(batch, 3, t, s, s, generator=g), torch.randint(0, 10, (batch,), generator=g)
    pin = SelectionPin(cpu_model).record()
    ref_logits, ref_grads = step(cpu_model, x, y, None, restore=False)
    torch.manual_seed(0)
    dev_model = preset(name, num_classes=10, dropout_rate=0.0, zero_init_final_bn=False, **overrides).to(device)
    dev_pin = SelectionPin(dev_model)
    dev_pin.recorded, dev_pin.margins = pin.recorded, pin.margins
    dev_pin.replay()
    with device_path(device):
        logits, grads = step(dev_model, x.to(device), y.to(device), None, restore=False)
    assert rel_err(logits, ref_logits) <= NET_TOL["logits_rel"], rel_err(logits, ref_logits)
    assert rel_err(grads, ref_grads) <= NET_TOL["grad_rel"], rel_err(grads, ref_grads)
    assert all(gap <= NET_TOL["tie"] for _, _, gap in dev_pin.swaps()), dev_pin.swaps()
    # The BatchNorm running statistics were updated alike (train mode on both sides).
    for (k, a), (_, b) in zip(dev_model.state_dict().items(), cpu_model.state_dict().items()):
        if k.endswith("running_mean") or k.endswith("running_var"):
            assert_close(a, b, k, dict(rtol=1e-3, atol=1e-6))
