from setuptools import find_packages, setup

setup(
    name="plasticity-dist",
    version="0.1.0",
    description="Measure loss of plasticity in GPT-style language models at cluster scale",
    packages=find_packages(include=["plasticity_dist", "plasticity_dist.*"]),
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.4",
        "deepspeed>=0.15",
        "accelerate>=1.0",
        "transformers>=4.40",  # accelerate's DeepSpeed path imports it unconditionally
        "datasets>=3.1",  # IterableDataset.shard(contiguous=True) and num_shards: a shard reads whole pieces
        "tokenizers>=0.19",  # `tokenizer train`: the shared byte-level BPE
        "webdataset>=0.2.90",
        "zstandard>=0.22",
        "safetensors>=0.4",  # slim checkpoints (accelerate depends on it too)
        "numpy>=1.26",
        "rich>=13",
        "pyyaml>=6",
        "matplotlib>=3.8",
        "scipy>=1.11",  # statistics of the report: t and normal distributions, censored likelihood
    ],
    extras_require={
        "tensorboard": ["tensorboard>=2.14"],
        "eval": ["lm_eval>=0.4.9"],  # downstream evaluation of exported checkpoints
        "wandb": ["wandb>=0.17"],  # wandb.enabled=true: metrics to Weights & Biases (online, or offline + sync)
        # pytest 9.2 silently breaks pytest-xdist 3.8's --dist loadgroup (pytest-dev/pytest-xdist#1386)
        "dev": ["pytest>=8,<9.2", "pytest-xdist>=3.5", "pyarrow>=15", "tokenizers>=0.19", "tensorboard>=2.14"],
    },
    entry_points={"console_scripts": ["plasticity-dist=plasticity_dist.cli:run"]},
)
