"""mtnet_plugin.benchmarks: what the measuring tools report, apart from the runtime that trains and tests.

- ``benchmark.py``: wall-clock latency, peak memory and per-part time of MTNet beside X3D (``tools/benchmark.py``);
- ``loader_benchmark.py``: the data loader's clip rate beside the model's training step rate (``--loader``);
- ``zoo.py``: params and GFLOPs of the presets beside the paper's tables (``tools/model_stats.py``);
- ``ablation.py``: repeated synthetic-demo trainings per variant, mean +- std of 30-view top-1 (``tools/ablate.py``).

This floor sits above ``engine``: it may import every floor below; nothing in the package imports it.
"""
