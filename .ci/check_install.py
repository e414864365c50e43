"""Check an installed (non-editable) mtnet_plugin: run from outside the repository with the installed
package's interpreter, after `.ci/run` installed the wheel into a fresh virtual environment.

    python check_install.py REPO_ROOT

Fails (exit 1) when the package imported is the repository's copy instead of the installed one, when the
fused CPU kernels do not build from the installed sources (mtnet_plugin.ops.native), or when the demo
config's model (configs/Synthetic/MTNet_XS.yaml) does not run forward.
"""
import os
import sys
import tempfile


def main(repo: str) -> int:
    repo = os.path.realpath(repo)
    os.environ.setdefault("MTNET_NATIVE_CACHE", tempfile.mkdtemp(prefix="mtnet_native_check_"))
    import torch

    import mtnet_plugin
    from mtnet_plugin.config import load_config
    from mtnet_plugin.models import build_model
    from mtnet_plugin.ops import native

    where = os.path.realpath(mtnet_plugin.__file__)
    if where.startswith(repo + os.sep):
        print(f"FAIL: imported the repository's copy {where}, not the installed package")
        return 1
    if not native.available():
        print(f"FAIL: the installed package's CPU kernels do not build: {native.reason()}")
        return 1
    cfg = load_config([os.path.join(repo, "configs", "Synthetic", "MTNet_XS.yaml")])
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    frames, crop = int(cfg.DATA.NUM_FRAMES), int(cfg.DATA.TRAIN_CROP_SIZE)
    with torch.no_grad():
        logits = model(torch.randn(2, 3, frames, crop, crop))
    if tuple(logits.shape) != (2, cfg.MODEL.NUM_CLASSES) or not torch.isfinite(logits).all():
        print(f"FAIL: demo model output {tuple(logits.shape)}, finite={bool(torch.isfinite(logits).all())}")
        return 1
    print(f"OK: {where}; kernels {native.reason()}; {type(model).__name__} -> logits {tuple(logits.shape)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
