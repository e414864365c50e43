#!/usr/bin/env python
"""Packaging for mtnet_plugin: MTNet (Stergiou & Poppe, IJCNN 2021) as a PySlowFast-compatible plugin."""
import os

from setuptools import find_packages, setup


def _version() -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "mtnet_plugin", "__init__.py")) as f:
        for line in f:
            if line.startswith("__version__"):
                return line.split("=")[1].strip().strip("\"'")
    raise RuntimeError("__version__ not found in mtnet_plugin/__init__.py")


setup(
    name="mtnet_plugin",
    version=_version(),
    description="Multi-Temporal Networks (MTNet) for video action recognition, PySlowFast-config compatible",
    long_description=open("README.md").read() if os.path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(exclude=("tests", "tests.*", "configs", "tools")),
    # The fused CPU kernels' C sources and the headers they include, compiled on first use
    # (mtnet_plugin/ops/native.py); nothing is built here. Every file of ops/csrc ships: without a header the
    # build fails and an installed package silently runs the slower eager ops (tests/test_packaging.py).
    package_data={"mtnet_plugin.ops": ["csrc/*"]},
    install_requires=[
        "torch>=2.1",
        "torchvision>=0.16",
        "fvcore>=0.1.5",
        "iopath>=0.1.9",
        "av>=11",
        "simplejson>=3.17",
        "numpy>=1.24",
        "pyyaml>=5.4",
        "matplotlib>=3.6",
        "tqdm>=4.60",
    ],
    extras_require={
        # The package never imports pytorchvideo: only the optional builder mtnet_plugin/integrations/pytorchvideo.py
        # (MTNet through pytorchvideo's create_x3d) and the tests that compare against it do.
        "pytorchvideo": ["pytorchvideo>=0.1.5"],
        # TENSORBOARD.ENABLE writes events through torch.utils.tensorboard, which needs this package.
        "tensorboard": ["tensorboard>=2.14"],
        # DATA.DECODING_BACKEND torchcodec; it also needs the system's FFmpeg libraries (apt-get install -y ffmpeg).
        "torchcodec": ["torchcodec>=0.7"],
        # The export tests check ONNX parity through onnxruntime; without these they skip that part. The test extra
        # brings every optional extra so CI tests each optional path.
        "test": ["pytest>=7", "onnx>=1.15", "onnxruntime>=1.17", "onnxscript>=0.1", "pytorchvideo>=0.1.5",
                 "tensorboard>=2.14", "torchcodec>=0.7", "submitit>=1.5"],
        "export": ["onnx>=1.15", "onnxruntime>=1.17", "onnxscript>=0.1"],
        # tools/submit.py: SLURM submission through submitit (tools/slurm_train.sh needs nothing)
        "cluster": ["submitit>=1.5"],
    },
)
