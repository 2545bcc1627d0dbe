from setuptools import find_packages, setup

setup(
    name="hdfsad",
    version="0.1.0",
    description="Anomaly detection for HDFS logs as a distributed batch system on Apache Spark",
    long_description=open("README.md", encoding="utf-8").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["hdfsad", "hdfsad.*"]),
    package_data={"hdfsad.resources": ["*.yaml"]},
    install_requires=[
        "pyspark==4.3.0",
        # The CPU build of torch 2.13.0; a looser pin would pull a multi-GB CUDA build.
        "torch==2.13.0",
        "pandas>=2.2,<3",
        "pyarrow>=18",
        "numpy>=1.26",
        "pyyaml>=6",
        "matplotlib>=3.8",
        # Experiment tracking (hdfsad.tracking): the client only (no server, no SQL store), pulls no torch.
        # The bench extra's drain3==0.9.11 pins cachetools 4, which holds mlflow-skinny at 2.12.x there.
        "mlflow-skinny>=2.12,<4",
        # mlflow-skinny < 2.13 imports pkg_resources, which setuptools 81 removed.
        "setuptools<81",
    ],
    extras_require={
        "dev": ["pytest>=8", "pytest-timeout>=2.3", "hypothesis>=6.100"],
        "bench": ["drain3==0.9.11"],
    },
    entry_points={"console_scripts": ["hdfsad=hdfsad.cli:main"]},
)
